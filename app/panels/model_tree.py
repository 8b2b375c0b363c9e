"""The network as a tree: each module with its type, parameter count and output shape
(rows of core.models.describe_model); above it, for a model opened from elsewhere
(File → Open model…), what was recognised (the session's model_source: the lines of
`python -m core inspect`)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

COLUMNS = ["Module", "Type", "Parameters", "Output shape"]
EXPAND_DEPTH = 2
SOURCE_LINES = 9  # the description box shows this many lines before it scrolls


def format_shape(shape) -> str:
    if shape is None:
        return "–"
    if shape and all(isinstance(s, int) for s in shape):
        return "×".join(str(s) for s in shape)
    if not shape:
        return "scalar"
    return "(" + ", ".join(format_shape(s) for s in shape) + ")"


class ModelPanel(QWidget):
    """`modelTree`: parents before children as describe_model lists them; `modelSource`:
    what an opened model is (hidden for models trained or saved here)."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("modelPanel")
        self.session = session
        self.summary = QLabel("The model appears when the data set is loaded.")
        self.summary.setObjectName("modelSummary")
        self.summary.setWordWrap(True)
        self.modelSource = QPlainTextEdit()
        self.modelSource.setObjectName("modelSource")
        self.modelSource.setReadOnly(True)
        self.modelSource.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.modelSource.setToolTip("What was recognised in the opened model: format, "
                                    "network, diffusion, what was mapped to what, notes "
                                    "(as `python -m core inspect PATH` prints it)")
        line = self.modelSource.fontMetrics().lineSpacing()
        self.modelSource.setMaximumHeight(SOURCE_LINES * line + 12)
        self.modelSource.hide()
        self.modelTree = QTreeWidget()
        self.modelTree.setObjectName("modelTree")
        self.modelTree.setToolTip("The network's modules: type, trainable parameters and the "
                                  "output shape for one example (hover a name for its path)")
        self.modelTree.setColumnCount(len(COLUMNS))
        self.modelTree.setHeaderLabels(COLUMNS)
        self.modelTree.setAlternatingRowColors(True)
        self.modelTree.setUniformRowHeights(True)
        header = self.modelTree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 320)
        header.resizeSection(1, 160)
        header.resizeSection(2, 110)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.summary)
        layout.addWidget(self.modelSource)
        layout.addWidget(self.modelTree, 1)
        session.model_described.connect(self.show_rows)
        session.model_source_changed.connect(self.show_source)

    def show_source(self, lines) -> None:
        """The opened model's description (None: hide the box)."""
        self.modelSource.setPlainText("\n".join(lines or []))
        self.modelSource.setVisible(bool(lines))

    def show_rows(self, rows) -> None:
        self.modelTree.clear()
        if not rows:
            self.summary.setText("No model.")
            return
        items: dict[str, QTreeWidgetItem] = {}
        for row in rows:
            name = row.name or "(model)"
            label = row.name.rsplit(".", 1)[-1] if row.name else type_label(row)
            item = QTreeWidgetItem([label, row.type, f"{row.params:,}", format_shape(row.output_shape)])
            item.setToolTip(0, name)
            item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            parent_name = row.name.rsplit(".", 1)[0] if "." in row.name else ("" if row.name else None)
            parent = items.get(parent_name) if parent_name is not None else None
            if parent is None:
                self.modelTree.addTopLevelItem(item)
            else:
                parent.addChild(item)
            items[row.name] = item
            item.setExpanded(row.depth < EXPAND_DEPTH)
        root = rows[0]
        self.summary.setText(f"{root.type}: {root.params:,} parameters · "
                             f"output {format_shape(root.output_shape)} per example · "
                             f"{len(rows)} modules")

    def item_count(self) -> int:
        count = 0
        stack = [self.modelTree.topLevelItem(i) for i in range(self.modelTree.topLevelItemCount())]
        while stack:
            item = stack.pop()
            count += 1
            stack.extend(item.child(i) for i in range(item.childCount()))
        return count


def type_label(row) -> str:
    return row.type
