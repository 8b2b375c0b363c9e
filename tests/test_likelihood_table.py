"""core.likelihood_table: the readout's rows are the numbers of `python -m core likelihood`
(the exact score's ODE and the truth), the VLB row is core.metrics.nll_bound per point, the
rows that apply follow the model and the data, and progress can stop the work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from core.build import dataset_from_config, diffusion_from_config
from core.likelihood_table import ROW_LABELS, likelihood_rows, trace_for, vlb_log_likelihood
from core.metrics import nll_bound
from core.presets import load_preset


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def toy():
    config = load_preset("toy-2d")
    data = dataset_from_config(config)
    return data, diffusion_from_config(config, data.kind)


def test_exact_rows_equal_the_likelihood_command(toy, capsys):
    from core.__main__ import main

    data, diffusion = toy
    rows = likelihood_rows(None, diffusion, data.test[:40].double(), mixture=data.mixture)
    assert [row.key for row in rows] == ["ode_exact", "truth"]
    assert main(["likelihood", "--preset", "toy-2d", "--exact", "--data", "40"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    exact, truth = rows
    assert exact.nll == pytest.approx(report["nll_nats_per_dim"], abs=1e-12)
    assert exact.nll_stderr == pytest.approx(report["nll_nats_per_dim_stderr"], abs=1e-12)
    assert exact.nfe == report["nfe"]
    assert truth.nll == pytest.approx(report["true_nll_nats_per_dim"], abs=1e-12)
    assert abs(exact.nll - truth.nll) < 0.01 and exact.bits is None


class ShrunkEps(nn.Module):
    """A stand-in network: a fixed fraction of the exact eps (a wrong but smooth score)."""

    def __init__(self, exact, factor=0.8):
        super().__init__()
        self.exact, self.factor = exact, factor
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, t, y=None):
        return self.factor * self.exact(x, t) + 0 * self.weight


def test_model_rows_vlb_is_nll_bound_and_the_rows_are_ordered(toy):
    from core.exact import ExactEps

    data, diffusion = toy
    model = ShrunkEps(ExactEps(data.mixture, diffusion.schedule)).eval()
    points = data.test[:20].double()
    rows = likelihood_rows(model, diffusion, points, mixture=data.mixture, rtol=1e-4, atol=1e-4)
    assert [row.key for row in rows] == list(ROW_LABELS)
    bound = nll_bound(model, diffusion, points.float(), n=20, batch_size=64, seed=0)
    assert rows[0].nll == pytest.approx(bound["mean"], abs=1e-9)
    assert np.allclose(rows[0].log_likelihood, -2 * bound["per_example"])
    assert rows[1].nll > rows[3].nll - 0.05        # a wrong score is no better than the truth
    assert all(np.isfinite(row.log_likelihood).all() for row in rows)


def test_progress_reports_each_batch_and_can_stop(toy):
    data, diffusion = toy
    from core.exact import ExactEps

    model = ExactEps(data.mixture, diffusion.schedule).eval()
    seen = []
    vlb_log_likelihood(model, diffusion, data.test[:130].double(), progress=seen.append)
    assert seen == pytest.approx([64 / 130, 128 / 130, 1.0])

    def stop(_fraction):
        raise Stop

    with pytest.raises(Stop):
        likelihood_rows(None, diffusion, data.test[:10].double(), mixture=data.mixture,
                        progress=stop)


def test_trace_rule_is_exact_for_small_data_and_hutchinson_for_images():
    assert trace_for(2) == "exact" and trace_for(784) == "hutchinson"
    assert trace_for(2, "hutchinson") == "hutchinson"


def test_images_get_hutchinson_and_bits_per_dim_of_the_8_bit_data():
    import math

    from core.diffusion import GaussianDiffusion
    from core.schedule import NoiseSchedule, get_betas

    class LinearEps(nn.Module):
        def forward(self, x, t, y=None):
            return 0.1 * x

    diffusion = GaussianDiffusion(NoiseSchedule(get_betas("linear", 10)), data_kind="image")
    generator = torch.Generator().manual_seed(0)
    points = torch.randint(0, 256, (3, 1, 5, 5), generator=generator).double() / 127.5 - 1
    rows = likelihood_rows(LinearEps().eval(), diffusion, points, rtol=1e-3, atol=1e-3)
    assert [row.key for row in rows] == ["vlb", "ode"]
    ode = rows[1]
    assert ode.bits == pytest.approx(ode.nll / math.log(2.0))
    assert ode.probe_stderr is not None and ode.nfe > 0 and np.isfinite(ode.log_likelihood).all()
