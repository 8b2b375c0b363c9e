"""app.jobs.JobRunner: serial jobs never stack threads, and only a burst's last request runs."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject

from app.jobs import JobRunner


def test_serial_jobs_run_one_at_a_time_and_only_the_last_of_a_burst(qtbot):
    owner = QObject()
    runner = JobRunner(owner)
    release = threading.Event()
    started, results, concurrent = [], [], []
    alive = [0]
    lock = threading.Lock()

    def task(label, block):
        def fn(_progress, _should_stop):   # ignores stop requests, like a long numpy call
            with lock:
                alive[0] += 1
                concurrent.append(alive[0])
                started.append(label)
            if block:
                release.wait(30)
            with lock:
                alive[0] -= 1
            return label
        return fn

    runner.submit("curves", task("a", True), results.append, serial=True)
    qtbot.waitUntil(lambda: started == ["a"], timeout=5000)
    for label in ("b", "c", "d"):
        runner.submit("curves", task(label, False), results.append, serial=True)
    assert runner.running("curves") == 1 and runner.busy("curves")
    qtbot.wait(200)
    assert started == ["a"]          # b, c, d wait for a
    release.set()
    qtbot.waitUntil(lambda: results == ["d"] and not runner.busy(), timeout=10000)
    assert started == ["a", "d"]     # b and c were replaced; a's result is stale
    assert max(concurrent) == 1


def test_non_serial_jobs_all_run(qtbot):
    owner = QObject()
    runner = JobRunner(owner)
    results, effects = [], []

    def save(label):
        def fn(_progress, _should_stop):
            effects.append(label)        # the file a save writes
            return label
        return fn

    for label in ("x", "y", "z"):
        runner.submit("save", save(label), results.append)
    qtbot.waitUntil(lambda: not runner.busy(), timeout=10000)
    assert sorted(effects) == ["x", "y", "z"]   # every request ran: a save is never dropped
    assert results[-1] == "z" and "z" in results


def test_cyclic_garbage_is_collected_in_the_gui_thread_while_windows_are_open(make_window,
                                                                              qtbot):
    """Collected in a worker thread, the Qt wrappers of a closed window deadlock the GUI
    thread (app.workers.GuiGarbageCollector): while a window is open only the GUI thread
    collects; with every window closed Python collects automatically again."""
    import gc
    import threading

    first, second = make_window(), make_window()
    assert not gc.isenabled()
    where: list[bool] = []

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):
            where.append(threading.current_thread() is threading.main_thread())

    Cycle()

    def allocate() -> None:           # a worker allocating a lot triggers no collection
        kept = [[] for _ in range(5000)]
        del kept

    worker = threading.Thread(target=allocate)
    worker.start()
    worker.join()
    assert where == []
    kept = [[] for _ in range(2000)]  # enough young objects for the timer to collect
    qtbot.waitUntil(lambda: len(where) > 0, timeout=10000)
    assert where == [True] and kept
    second.close()
    assert not gc.isenabled()         # the first window is still open
    first.close()
    assert gc.isenabled()
