"""The `compression` experiment, top to bottom (Deletang et al. 2023, "Language Modeling Is Compression").

1. The model: the `gpt` experiment's GPT on its stdlib corpus (`gpt.corpus.load_corpus`, cached).
   When a `gpt` run with the same model/optim/steps/data/seed published its weights to the stage
   cache (`gpt.experiment.model_params`), they are loaded; otherwise `gpt.experiment.train_model`
   trains them here (stage `train`) and publishes them for the next run.
2. Code (§3): held-out text in chunks of `chunk_bytes`, each chunk on its own, by range coding with
   the model's next-byte probabilities (`coder.encode`), then decode every chunk back
   (`coder.decode`) and compare byte for byte. The same for two modalities the model never saw:
   grey-level image bytes and random digits (§3.1's point that a text model codes other data).
3. Compare on the same bytes (Table 1): gzip -9, bzip2, lzma per chunk and on the whole; the raw
   rate (code length / raw length) and the adjusted rate, which adds the model's own size.

Claims (scorecard), rates in bits per byte (8 = no compression; Table 1's % = bits/byte / 8):
- `roundtrip_exact`: fraction of chunks (text, image, digits) decoded exactly (= 1);
- `code_length_overhead`: max over text chunks of |coded bits - sum -log2 p| (<= 32 bits);
- `raw_beats_gzip_chunked`: gzip -9 per chunk minus the model's raw rate (> 0);
- `adjusted_above_gzip`: the adjusted rate minus gzip -9's (> 0: the paper's caveat);
- `raw_beats_lzma_whole` (full): lzma on the whole coded text minus the model's raw rate (> 0).

Deviations: a 0.8 M-parameter byte-level GPT trained on Python source instead of Chinchilla 70B
on MassiveText; held-out *code* instead of enwik9; context of at most block_size - 1 bytes
inside a chunk (see coder.py); sklearn's 8x8 digits instead of ImageNet patches.
"""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np
import torch

from toyrepro.compression import baselines
from toyrepro.compression.coder import decode, encode
from toyrepro.core.run import RunContext
from toyrepro.core.scorecard import Claim
from toyrepro.core.stage import stage_path
from toyrepro.core.transformer import GPT
from toyrepro.gpt.corpus import load_corpus
from toyrepro.gpt.experiment import model_params, train_model

log = logging.getLogger("toyrepro")
SOURCE = "Deletang et al. 2023, §3 and Table 1"


def claims(cfg=None) -> list[Claim]:
    return [
        Claim("roundtrip_exact", "decoding reproduces every chunk byte for byte (fraction of chunks)",
              SOURCE + " (lossless)", ">=", 1.0),
        Claim("code_length_overhead", "coded length within 32 bits per chunk of sum -log2 p "
              "(value = max over chunks of |coded bits - sum -log2 p|)", "Shannon 1948; Deletang §2",
              "<=", 32.0, scales=("quick", "full")),
        Claim("raw_beats_gzip_chunked", "raw rate below gzip -9 per 2048-byte chunk "
              "(value = gzip - model, bits/byte)", SOURCE, ">", 0.0, scales=("quick", "full")),
        Claim("adjusted_above_gzip", "the adjusted rate (model size counted) is above gzip -9's "
              "(value = adjusted - gzip, bits/byte)", SOURCE + " (adjusted rate)", ">", 0.0,
              scales=("quick", "full")),
        Claim("raw_beats_lzma_whole", "raw rate below lzma on the whole held-out text "
              "(value = lzma - model, bits/byte)", SOURCE, ">", 0.0, scales=("full",)),
    ]


def load_or_train(ctx: RunContext, train_text: torch.Tensor, val_text: torch.Tensor) -> GPT:
    """The gpt experiment's trained model for this config: from the stage cache, else trained here."""
    cfg, task = ctx.cfg, ctx.cfg.compression
    path = stage_path(cfg.cache_dir, "gpt_model", model_params(cfg, task.max_files, task.val_fraction))
    if not (path / "params.json").exists():
        return train_model(ctx, train_text, val_text, task.max_files, task.val_fraction).eval()
    log.info("model: reusing the gpt experiment's trained model %s", path)
    model = GPT(cfg.model)
    model.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    return model.eval()


def run(ctx: RunContext) -> None:
    cfg, task, card = ctx.cfg, ctx.cfg.compression, ctx.card
    train_text, val_text = load_corpus(cfg.cache_dir, task.max_files, task.val_fraction)
    model = load_or_train(ctx, train_text, val_text)
    n = task.chunk_bytes
    data = {"text": baselines.chunked(val_text.numpy(), n, task.text_chunks),
            "image": baselines.chunked(baselines.image_bytes(), n, task.other_chunks),
            "digits": baselines.chunked(baselines.random_digits(n * task.other_chunks, cfg.seed), n,
                                        task.other_chunks)}
    log.info("coding %s chunks of %d bytes", {k: len(v) for k, v in data.items()}, n)

    rows, exact, total, text_coded = {}, 0, 0, None
    for name, chunks in data.items():
        coded = encode(model, chunks, task.coding_batch)
        decoded = decode(model, coded.codes, n, task.coding_batch)
        ok = (decoded == chunks).all(axis=1)
        exact, total = exact + int(ok.sum()), total + len(chunks)
        rows[name] = {"model": float(coded.code_bits.sum() / chunks.size),
                      "model_ideal": float(coded.ideal_bits.sum() / chunks.size),
                      "model_bytes_per_s": chunks.size / coded.seconds,
                      "unigram": baselines.unigram_bits(train_text.numpy(), chunks.reshape(-1))}
        rows[name] |= {f"{c} {k}": v for c, r in baselines.rates(chunks).items() for k, v in r.items()}
        ctx.log_metrics("coding", {f"{name}/{k}": v for k, v in rows[name].items()})
        text_coded = coded if name == "text" else text_coded
        log.info("%s: model %.3f bits/byte (ideal %.3f), gzip -9 %.3f per chunk; %d/%d exact", name,
                 rows[name]["model"], rows[name]["model_ideal"], rows[name]["gzip -9 chunk"], ok.sum(), len(ok))
    card.record("roundtrip_exact", exact / total, f"{exact}/{total} chunks (text, image, digits) decoded exactly")

    over = text_coded.code_bits - text_coded.ideal_bits
    shannon = text_coded.symbol_bits - text_coded.ideal_bits
    card.record("code_length_overhead", float(np.abs(over).max()),
                f"mean {over.mean():.1f} bits/chunk; a whole-bits-per-byte code would be "
                f"{shannon.mean():.0f} bits over")

    t = rows["text"]
    card.record("raw_beats_gzip_chunked", t["gzip -9 chunk"] - t["model"],
                f"model {t['model']:.3f}, gzip -9 {t['gzip -9 chunk']:.3f}, unigram {t['unigram']:.3f} bits/byte; "
                f"encodes {t['model_bytes_per_s']:.0f} B/s vs gzip {t['gzip -9 bytes_per_s']:.0f} B/s")

    model_bytes = task.bytes_per_param * sum(p.numel() for p in model.parameters())
    raw = data["text"].size
    adjusted = t["model"] + 8 * model_bytes / raw
    gain = t["gzip -9 chunk"] - t["model"]
    even = f"{8 * model_bytes / gain / 1e6:.1f} MB" if gain > 0 else "never (raw rate not below gzip)"
    card.record("adjusted_above_gzip", adjusted - t["gzip -9 chunk"],
                f"adjusted {adjusted:.1f} bits/byte on {raw} bytes (model {model_bytes / 1e6:.2f} MB); "
                f"breaks even with gzip at {even} of text")
    card.record("raw_beats_lzma_whole", t["lzma -9 whole"] - t["model"],
                f"model {t['model']:.3f}, lzma whole {t['lzma -9 whole']:.3f} bits/byte")

    ctx.write_text("rates.md", rates_table(rows, adjusted))
    ctx.save_figure(rates_figure(rows, over), "rates")


def rates_table(rows: dict[str, dict[str, float]], adjusted: float) -> str:
    cols = ["model", "model_ideal", "gzip -9 chunk", "bzip2 -9 chunk", "lzma -9 chunk", "gzip -9 whole",
            "lzma -9 whole", "unigram", "model_bytes_per_s", "gzip -9 bytes_per_s"]
    lines = ["| data | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.3f}" if "per_s" not in c else f"{r[c]:.0f}"
                                                for c in cols) + " |")
    return "\n".join(lines) + f"\n\nadjusted rate (text): {adjusted:.2f} bits/byte\n"


def rates_figure(rows: dict[str, dict[str, float]], over: np.ndarray) -> plt.Figure:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    bars = {"GPT + arithmetic coding": "model", "gzip -9": "gzip -9 chunk", "bzip2 -9": "bzip2 -9 chunk",
            "lzma -9": "lzma -9 chunk", "lzma -9 (whole)": "lzma -9 whole"}
    x = np.arange(len(rows))
    for i, (label, key) in enumerate(bars.items()):
        ax.bar(x + (i - 2) * 0.16, [r[key] for r in rows.values()], 0.16, label=label)
    ax.axhline(8, color="#999", lw=0.8, ls=":")
    ax.set_xticks(x, list(rows))
    ax.set_ylabel("bits / byte (per chunk; lower is better)")
    ax.set_ylim(0, 10.5)
    ax.legend(fontsize=7, ncol=3, loc="upper center")
    ax.set_title("held-out code vs data the model never saw")
    ax2.plot(over, "o", ms=3)
    ax2.axhline(32, color="#c33", lw=0.8, ls="--", label="32 bits")
    ax2.set_xlabel("text chunk")
    ax2.set_ylabel("coded bits - sum -log2 p")
    ax2.legend(fontsize=7)
    return fig
