"""The form's name for each config field, so messages say "Steps T: must be between 2 and
20000" rather than "diffusion.timesteps = 1 is invalid: ...". The experiment panel labels its
rows from this table and the error texts (app.errors) use it; one spelling for both. Also
each field's tooltip (what it is, with the formula where there is one)."""

from __future__ import annotations

from core.config import ConfigError

# field (core.config's dotted name) -> the label of the row that edits it
FIELD_LABELS: dict[str, str] = {
    "train.dataset": "Data set",
    "train.image_size": "Data set",
    "train.grayscale": "Data set",
    "train.num_samples": "Data set",
    "train.class_conditional": "Class-conditional",
    "model": "Model size",
    "diffusion.schedule": "Schedule",
    "diffusion.timesteps": "Steps T",
    "diffusion.sigma_min": "σ range (VE)",
    "diffusion.sigma_max": "σ range (VE)",
    "diffusion.mean_type": "Mean",
    "diffusion.variance_type": "Variance",
    "diffusion.loss_type": "Loss",
    "diffusion.lambda_vlb": "Loss",
    "diffusion.timestep_sampler": "Loss",
    "train.lr": "Learning rate",
    "train.batch_size": "Batch size",
    "train.steps": "Train steps",
    "train.device": "Device",
    "train.seed": "Seed",
    "train.micro_batch": "Micro-batch",
    "model.checkpointing": "Checkpointing",
    # the Trajectories panel
    "sampling.sampler": "Sampler",
    "sampling.steps": "Steps",
    "sampling.n": "Samples",
    "sampling.seed": "Seed",
    "sampling.guidance": "Guidance",
    "sampling.label": "Class",
}


# what each field of the settings form is, with the formula where there is one
FIELD_TIPS = {
    "preset": "A complete set of settings. On a CPU: toy-2d (2-D points, seconds) and "
                   "mnist-cpu (16×16 digits, a few minutes); on a GPU: mnist-ddpm (Ho et al. "
                   "2020) and mnist-improved (Nichol & Dhariwal 2021)",
    "train.dataset": "The training data: 2-D toy distributions (points), small image sets, a "
                    "folder of your own images, or points you draw",
    "train.class_conditional": "Give the network the class label y as input, dropped to the "
                             "null class with probability label_dropout, so sampling can "
                             "pick a class and use classifier-free guidance",
    "model": "The network's width and depth: an MLP for 2-D points, a UNet for "
                      "images. A bigger model learns more and costs more per step",
    "diffusion.schedule": "How the noise variance βₜ grows with t; ᾱₜ = Πₛ≤ₜ (1 − βₛ). Linear: "
                     "βₜ from 1e-4 to 0.02 (Ho et al.); cosine: ᾱₜ ∝ cos²(π/2 · (t/T + s)/"
                     "(1 + s)) (Nichol & Dhariwal)",
    "diffusion.timesteps": "T, the number of noising steps: xₜ = √ᾱₜ x₀ + √(1 − ᾱₜ) ε, t = 1..T",
    "diffusion.sigma_min": "The VE schedule's noise levels (Song & Ermon 2019): σᵢ geometric from "
                           "σ min to σ max, x̃ = x₀ + σᵢ z; NCSN picks σ max near the largest "
                           "distance between data points",
    "diffusion.sigma_max": "The VE schedule's largest noise level σ max (see σ min)",
    "diffusion.mean_type": "What the network predicts: the noise ε, x₀ itself, or "
                     "v = √ᾱₜ ε − √(1 − ᾱₜ) x₀; the reverse mean μθ(xₜ, t) follows from it",
    "diffusion.variance_type": "The reverse step's variance Σθ: fixed small β̃ₜ = (1 − ᾱₜ₋₁)/"
                         "(1 − ᾱₜ) βₜ, fixed large βₜ, or learned range "
                         "Σθ = exp(v log βₜ + (1 − v) log β̃ₜ) (with the hybrid or vlb loss)",
    "diffusion.loss_type": "simple: L_simple = E‖ε − εθ(xₜ, t)‖²; hybrid: L_simple + λ L_vlb "
                     "(λ = 0.001); vlb: the variational bound L_vlb = Σₜ Lₜ alone. A learned "
                     "variance needs hybrid or vlb (L_simple gives it no gradient)",
    "train.lr": "AdamW's learning rate, warmed up linearly: lr · min(1, (n + 1) / "
                        "warmup_steps) at step n",
    "train.batch_size": "Examples per training step; a step's cost grows with it",
    "train.steps": "Optimizer steps of the run; after a finished run Start trains this "
                      "many more",
    "train.device": "Where training and sampling run: auto picks CUDA, then Apple MPS, then "
                   "the CPU",
    "train.seed": "Seed of every random draw of the run (weights, data order, t, noise): the "
                "same seed repeats a run exactly",
    "train.micro_batch": "Gradient accumulation: each step's batch B runs through the network "
                         "in chunks of k examples and their gradients are summed with weight "
                         "k/B, so the step's gradient is the whole batch's while the "
                         "activations of only k examples are in memory. k must divide the "
                         "batch size; whole batch (0) runs it at once. Changes no result, "
                         "only memory and speed: a trained model continues with it",
    "model.checkpointing": "Activation checkpointing of the UNet's residual blocks: their "
                           "activations are recomputed in the backward pass instead of "
                           "kept, which saves much memory for about a third more compute. "
                           "The weights and the numbers do not change (no effect on the "
                           "MLP of 2-D data); a trained model continues with it",
}


def field_label(field: str) -> str:
    """The form's label of `field`; a sampler option's own label; for a field the form does
    not show, its name made readable with the field in brackets ("Probe timesteps
    (train.probe_timesteps)")."""
    if field in FIELD_LABELS:
        return FIELD_LABELS[field]
    section, _, name = field.partition(".")
    if section in FIELD_LABELS:
        return FIELD_LABELS[section]
    if section == "sampling":
        from core.samplers import all_options

        option = all_options().get(name)
        if option is not None:
            return option.label
    readable = (name or section).replace("_", " ")
    return f"{readable[:1].upper()}{readable[1:]} ({field})"


def readable_error(exc: ConfigError) -> str:
    """"<label>: <what is allowed>" for a setting of the form; a file's error (it names the
    file and the field in it) as core wrote it."""
    if exc.source or exc.field == "config":
        return str(exc)
    return f"{field_label(exc.field)}: {exc.allowed}"
