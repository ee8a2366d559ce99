"""Channel statistics of natural vs adversarial Fashion-MNIST images (the picture behind CAS / CIFS).

Trains the undefended small CNN (``defended_cnn("none")``) and the CAS and CIFS variants with plain
training, then measures on test images, per class, how many channels of a layer fire and how
strongly, for natural images and their PGD-20 examples (L-inf eps 0.1), with
:func:`tfrobust.evaluation.compare_channel_statistics`. Writes ``docs/channels.json``, PNG plots in
``docs/figures/`` and the generated block of ``docs/defenses.md``.

Usage:
    python -m benchmarks.channels [--n 1000] [--epochs 2] [--train_subset 20000]
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from tfrobust import data, keras, models
from tfrobust.evaluation import compare_channel_statistics, plot_channel_statistics
from tfrobust.utils import atomic_write_json, atomic_write_text, environment, markdown_table, set_seed

DOCS = Path(__file__).resolve().parents[1] / "docs"
BEGIN, END = "<!-- channels:begin -->", "<!-- channels:end -->"
LAYERS = {"none": ["act2_relu", "act3_relu"], "cas": ["act2_relu", "cas"], "cifs": ["act2_relu", "cifs"]}


def _train(defense, x, y, epochs, seed):
    import tensorflow as tf

    set_seed(seed)
    train_model, model = models.defended_cnn(defense, return_train_model=True)
    train_model.compile(keras.optimizers.Adam(1e-3),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    inputs = (x, y) if train_model is not model else x  # CAS / CIFS read the label in training
    ds = tf.data.Dataset.from_tensor_slices((inputs, y)).shuffle(len(x), seed=seed)
    train_model.fit(ds.batch(128).prefetch(tf.data.AUTOTUNE), epochs=epochs, verbose=0)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="test images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train_subset", type=int, default=20000)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    load_start = open("/proc/loadavg").read().split()[:3]
    x_tr, y_tr = data.load_dataset("fashion_mnist", "train", limit=args.train_subset)
    x_te, y_te = data.load_dataset("fashion_mnist", "test", limit=args.n)
    fig_dir = DOCS / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    rows, record = [], {"settings": vars(args), "models": {}}
    for defense, layers in LAYERS.items():
        t0 = time.perf_counter()
        model = _train(defense, x_tr, y_tr, args.epochs, args.seed)
        comp = compare_channel_statistics(model, x_te, y_te, eps=args.eps, steps=20, layers=layers,
                                          seed=args.seed)
        clean = float(np.mean(np.argmax(model.predict(x_te, verbose=0), 1) == y_te))
        png = plot_channel_statistics(comp, fig_dir / f"channels_{defense}.png",
                                      title=f"defended_cnn('{defense}'), Fashion-MNIST, "
                                            f"PGD-20 eps {args.eps}")
        record["models"][defense] = {"clean_accuracy": clean, "summary": comp["summary"],
                                     "attack": comp["attack"], "seconds": time.perf_counter() - t0,
                                     "plot": str(png.relative_to(DOCS))}
        for layer, s in comp["summary"].items():
            nat, adv = s["natural"], s["adversarial"]
            rows.append([defense, layer, nat["channels"], f"{nat['activated_channels']:.1f}",
                         f"{adv['activated_channels']:.1f}", f"{nat['uniformity']:.3f}",
                         f"{adv['uniformity']:.3f}", f"{nat['mean_magnitude']:.3f}",
                         f"{adv['mean_magnitude']:.3f}"])
    record["environment"] = environment()
    record["measured"] = {"start": started.isoformat(timespec="seconds"),
                          "end": datetime.now(UTC).isoformat(timespec="seconds"),
                          "loadavg_start": load_start,
                          "loadavg_end": open("/proc/loadavg").read().split()[:3]}
    atomic_write_json(DOCS / "channels.json", record)
    table = markdown_table(["model", "layer", "channels", "activated (nat)", "activated (adv)",
                            "uniformity (nat)", "uniformity (adv)", "magnitude (nat)",
                            "magnitude (adv)"], rows)
    m = record["measured"]
    block = "\n".join([
        BEGIN,
        f"Measured by `python -m benchmarks.channels` on {m['start']} "
        f"(load average {' '.join(m['loadavg_start'])} at start): {args.n} Fashion-MNIST test images, "
        f"models trained {args.epochs} epochs on "
        f"{args.train_subset} training images (plain training), adversarial examples PGD-20 L-inf "
        f"eps {args.eps} on the logits. Per class (true label), a channel's *count* is how often it "
        "is > 0 over the class's images and their positions; it is *activated* for the class when "
        "its count exceeds 1% of the largest count over the layer's channels (the CAS rule); the "
        "table averages over classes. "
        "Uniformity is the normalised entropy of the per-class counts (1 = every channel equally often).",
        "",
        table,
        "",
        *[f"![{d}](figures/channels_{d}.png)" for d in LAYERS],
        END,
    ])
    doc = DOCS / "defenses.md"
    text = doc.read_text()
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Channel statistics: natural vs adversarial\n\n" + block + "\n"
    atomic_write_text(doc, text)
    print(table)


if __name__ == "__main__":
    main()
