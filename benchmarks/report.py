"""Turn the raw job results into the benchmark's sections, target checks and a Markdown table."""

from __future__ import annotations

#: The issue's targets on a 2-core CPU at 299x299.
TARGET_CONFERENCE_SECONDS = 300.0  # whole conference profile, tracing included
TARGET_SPEEDUP = 1.5  # kit's steady training images/s over the paper recipe's
TARGET_PEAK_BYTES = 3e9  # 3 GB resident memory


def _result(document: dict, name: str) -> dict | None:
    job = document["jobs"].get(name)
    return job["result"] if job and job.get("ok") else None


def _ratio(a, b) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(a / b, 3)


def _phase(result: dict | None, phase: str) -> dict | None:
    return (result or {}).get("phases", {}).get(phase)


def combined_images_per_second(result: dict | None) -> float | None:
    """Steady images/s over a whole kit run: every phase's steady epochs, weighted by its epochs."""
    if not result:
        return None
    images = seconds = 0.0
    for phase, epochs_key in (("warmup", "warmup_epochs"), ("finetune", "finetune_epochs")):
        summary = _phase(result, phase)
        if not summary or "steady_epoch_train_seconds" not in summary:
            continue
        images += result[epochs_key] * summary["images_per_epoch"]
        seconds += result[epochs_key] * summary["steady_epoch_train_seconds"]
    return round(images / seconds, 3) if seconds else None


# --- sections ---------------------------------------------------------------------------------------------
def pipeline_section(doc: dict) -> dict:
    kit, paper = _result(doc, "pipeline_kit"), _result(doc, "pipeline_paper")
    return {
        "kit": kit, "paper": paper,
        "ratio_steady_images_per_second": _ratio((kit or {}).get("steady_images_per_second"),
                                                 (paper or {}).get("steady_images_per_second")),
        "ratio_first_pass_images_per_second": _ratio((kit or {}).get("first_pass_images_per_second"),
                                                     (paper or {}).get("first_pass_images_per_second")),
    }


def training_section(doc: dict) -> dict:
    conference, paper_profile = _result(doc, "kit_conference"), _result(doc, "kit_paper_profile")
    paper = _phase(_result(doc, "paper_recipe"), "paper")
    rows = {
        "kit_warmup": _phase(conference, "warmup"),
        "kit_finetune": _phase(conference, "finetune"),
        "kit_paper_profile": _phase(paper_profile, "finetune"),
        "paper": paper,
    }
    paper_speed = (paper or {}).get("steady_images_per_second")
    ratios = {}
    for name in ("kit_warmup", "kit_finetune", "kit_paper_profile"):
        row = rows[name] or {}
        ratios[f"{name}_vs_paper_images_per_second"] = _ratio(row.get("steady_images_per_second"), paper_speed)
        ratios[f"{name}_vs_paper_first_epoch_overhead"] = _ratio(row.get("first_epoch_overhead_seconds"),
                                                                (paper or {}).get("first_epoch_overhead_seconds"))
    kit_combined = combined_images_per_second(conference)
    ratios["kit_conference_vs_paper_images_per_second"] = _ratio(kit_combined, paper_speed)
    return {"phases": rows, "kit_conference_steady_images_per_second": kit_combined, "ratios": ratios}


END_TO_END_RUNS = ("kit_conference", "kit_paper_profile", "paper_recipe")


def _run_label(name: str, result: dict) -> str:
    if name == "paper_recipe":
        return f"paper's recipe ({result['epochs']} epochs, all trainable; + TEST predictions)"
    epochs = (f"{result['warmup_epochs']} frozen + {result['finetune_epochs']} fine-tune epochs"
              if result["warmup_epochs"] else f"{result['finetune_epochs']} epochs, all trainable")
    return f"kit, {result['profile']} profile ({epochs}; {' + '.join(result['stage_seconds'])})"


def end_to_end_section(doc: dict) -> dict:
    rows = {}
    for name in END_TO_END_RUNS:
        job = doc["jobs"].get(name)
        if not job or not job.get("ok"):
            continue
        rows[name] = {
            "label": _run_label(name, job["result"]),
            # The whole process: Python and TensorFlow start-up too (in a full run).
            "wall_seconds": job["wall_seconds"],
            "stage_seconds": job["result"]["stage_seconds"],
            "peak_rss_mb": job["peak_rss_mb"],
        }
    wall = {name: row["wall_seconds"] for name, row in rows.items()}
    return {
        "runs": rows,
        "ratio_conference_vs_paper_profile": _ratio(wall.get("kit_conference"), wall.get("kit_paper_profile")),
        "ratio_conference_vs_paper_recipe": _ratio(wall.get("kit_conference"), wall.get("paper_recipe")),
    }


def memory_section(doc: dict) -> dict:
    return {name: {"peak_rss_mb": job.get("peak_rss_mb"), "polled_peak_rss_mb": job.get("polled_peak_rss_mb")}
            for name, job in doc["jobs"].items() if job.get("ok")}


def gflops_section(doc: dict) -> dict:
    counts = _result(doc, "model_flops") or {}
    ceiling = (_result(doc, "matmul_ceiling") or {}).get("gflops")
    peak = doc["machine"]["fp32_peak_gflops"]
    training = training_section(doc)["phases"]
    rows = {}
    for name, flop_key in (("kit_warmup", "kit_warmup"), ("kit_finetune", "kit_finetune"),
                           ("kit_paper_profile", "kit_all_trainable"), ("paper", "paper")):
        phase, flop = training.get(name), counts.get(flop_key)
        if not phase or not flop or "steady_images_per_second" not in phase:
            continue
        achieved = flop["train_gflop_per_image"] * phase["steady_images_per_second"]
        rows[name] = {
            "train_gflop_per_image": flop["train_gflop_per_image"],
            "images_per_second": phase["steady_images_per_second"],
            "achieved_gflops": round(achieved, 1),
            "percent_of_estimated_peak": round(100 * achieved / peak, 1),
            "percent_of_matmul_ceiling": round(100 * achieved / ceiling, 1) if ceiling else None,
        }
    return {"estimated_peak_gflops": peak, "peak_formula": doc["machine"]["peak_formula"],
            "matmul_ceiling_gflops": ceiling,
            "matmul_percent_of_estimated_peak": round(100 * ceiling / peak, 1) if ceiling else None,
            "flop_counts": counts, "runs": rows}


def scaling_section(doc: dict) -> dict:
    def point(name: str) -> dict | None:
        result = _result(doc, name)
        if not result:
            return None
        out = {"image_size": result["image_size"]}
        for phase in ("warmup", "finetune"):
            summary = _phase(result, phase) or {}
            out["train_images"] = summary.get("images_per_epoch", out.get("train_images"))
            out[f"{phase}_epoch_seconds"] = summary.get("steady_epoch_seconds", summary.get("first_epoch_seconds"))
            out[f"{phase}_first_epoch_seconds"] = summary.get("first_epoch_seconds")
        return out

    base = point("kit_conference")
    points = [p for p in (point(n) for n in ("kit_conference", "scale_size_a", "scale_size_b",
                                              "scale_images_a", "scale_images_b")) if p]
    if base:
        for p in points:
            for phase in ("warmup", "finetune"):
                p[f"{phase}_relative_to_base"] = _ratio(p.get(f"{phase}_epoch_seconds"),
                                                       base.get(f"{phase}_epoch_seconds"))
            p["work_relative_to_base"] = round((p["image_size"] / base["image_size"]) ** 2
                                               * p["train_images"] / base["train_images"], 3)
    by_size = sorted((p for p in points if base and p["train_images"] == base["train_images"]),
                     key=lambda p: p["image_size"])
    by_images = sorted((p for p in points if base and p["image_size"] == base["image_size"]),
                       key=lambda p: p["train_images"])
    return {"image_size": by_size, "train_images": by_images}


SECTION_BUILDERS = {
    "pipeline": pipeline_section,
    "training": training_section,
    "end_to_end": end_to_end_section,
    "memory": memory_section,
    "gflops": gflops_section,
    "scaling": scaling_section,
}


def sections(doc: dict, chosen: list[str]) -> dict:
    return {name: SECTION_BUILDERS[name](doc) for name in chosen}


def targets(doc: dict) -> dict:
    """The issue's three targets; only meaningful for a full run at 299x299 (``applies``)."""
    applies = doc["mode"] == "full" and doc["plan"]["image_size"] == 299
    out = {"applies": applies}
    conference = doc["jobs"].get("kit_conference")
    if conference and conference.get("ok"):
        out["conference_wall_seconds"] = {"value": conference["wall_seconds"], "target": TARGET_CONFERENCE_SECONDS,
                                          "met": conference["wall_seconds"] <= TARGET_CONFERENCE_SECONDS}
        peak = conference["peak_rss_mb"] * 1e6
        out["conference_peak_memory_gb"] = {"value": round(peak / 1e9, 2), "target": TARGET_PEAK_BYTES / 1e9,
                                            "met": peak <= TARGET_PEAK_BYTES}
    speedup = training_section(doc)["ratios"].get("kit_conference_vs_paper_images_per_second")
    if speedup is not None:
        out["steady_training_speedup"] = {"value": speedup, "target": TARGET_SPEEDUP, "met": speedup >= TARGET_SPEEDUP}
    return out


# --- the table --------------------------------------------------------------------------------------------
def _f(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def markdown(doc: dict) -> str:
    m = doc["machine"]
    plan = doc["plan"]
    s = doc["sections"]
    lines = [f"## Benchmark results ({doc['mode']} run, {doc['created']})", "",
             f"Machine: {m['model']}, {m['cores']} cores ({m.get('hypervisor') or 'no'} hypervisor), "
             f"{m['memory_gib']} GiB RAM, {m['isa']}; TensorFlow on the CPU. "
             f"Image size {plan['image_size']}x{plan['image_size']}, batch {plan['batch_size']}, "
             "weights none (speed does not depend on weight values).", ""]

    if "pipeline" in s:
        p = s["pipeline"]
        rows = []
        for name, label in (("kit", "kit tf.data (decode once, cache, augment, [-1, 1])"),
                            ("paper", "paper ImageDataGenerator.flow_from_directory")):
            r = p.get(name) or {}
            rows.append([label, _f(r.get("steady_images_per_second"), 1), _f(r.get("first_pass_images_per_second"), 1),
                         _f(r.get("setup_seconds"), 2)])
        rows.append(["ratio kit / paper", _f(p["ratio_steady_images_per_second"], 2, "x"),
                     _f(p["ratio_first_pass_images_per_second"], 2, "x"), ""])
        lines += ["### 1. Input pipeline alone (training batches, augmentation on)", ""]
        lines += _table(["pipeline", "steady images/s", "first epoch images/s (incl. setup)", "setup s"], rows)

    if "training" in s:
        t = s["training"]
        labels = {"kit_warmup": "kit conference, phase 1 (base frozen)",
                  "kit_finetune": "kit conference, phase 2 (fine-tune from mixed9)",
                  "kit_paper_profile": "kit paper profile (all trainable)",
                  "paper": "paper recipe (all trainable, generator)"}
        rows = []
        for name, label in labels.items():
            r = t["phases"].get(name) or {}
            ratio = t["ratios"].get(f"{name}_vs_paper_images_per_second") if name != "paper" else None
            rows.append([label, _f(r.get("steady_seconds_per_step"), 3), _f(r.get("steady_images_per_second"), 2),
                         _f(ratio, 2, "x"), _f(r.get("first_epoch_overhead_seconds"), 1)])
        rows.append(["kit conference, both phases (epoch-weighted)", "",
                     _f(t.get("kit_conference_steady_images_per_second"), 2),
                     _f(t["ratios"].get("kit_conference_vs_paper_images_per_second"), 2, "x"), ""])
        lines += ["### 2. Training, steady state (first epoch excluded) and first-epoch overhead", ""]
        lines += _table(["run", "s/step", "images/s", "vs paper", "first-epoch overhead s"], rows)

    if "end_to_end" in s:
        e = s["end_to_end"]
        rows = []
        for name, r in e["runs"].items():
            stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stage_seconds"].items())
            rows.append([r["label"], _f(r["wall_seconds"], 0), stages, _f(r["peak_rss_mb"] / 1000, 2)])
        lines += ["### 3-4. End to end (one process: Python and TensorFlow start-up included) and peak memory", ""]
        lines += _table(["run", "wall s", "stages s", "peak RSS GB"], rows)
        lines += [f"Conference / paper profile wall time: {_f(e['ratio_conference_vs_paper_profile'], 2, 'x')}; "
                  f"conference / paper recipe: {_f(e['ratio_conference_vs_paper_recipe'], 2, 'x')}.", ""]

    if "gflops" in s:
        g = s["gflops"]
        rows = [[name, _f(r["train_gflop_per_image"], 2), _f(r["images_per_second"], 2), _f(r["achieved_gflops"], 1),
                 _f(r["percent_of_estimated_peak"], 1, " %"), _f(r["percent_of_matmul_ceiling"], 1, " %")]
                for name, r in g["runs"].items()]
        lines += ["### 5. Achieved GFLOP/s of the steady training step", ""]
        lines += _table(["run", "GFLOP per image (fwd+bwd)", "images/s", "GFLOP/s", "of est. peak",
                         "of matmul ceiling"], rows)
        lines += [f"Estimated fp32 peak: {g['peak_formula']} ({m['clock_source']}; FMA units "
                  f"{m['fma_units_source']}). Largest fp32 matmul reached {_f(g['matmul_ceiling_gflops'], 1)} GFLOP/s "
                  f"({_f(g['matmul_percent_of_estimated_peak'], 0, ' %')} of the estimate).", ""]

    if "scaling" in s:
        sc = s["scaling"]
        rows = []
        for axis, points in (("size", sc["image_size"]), ("images", sc["train_images"])):
            for p in points:
                rows.append([axis, p["image_size"], p["train_images"], _f(p.get("warmup_epoch_seconds"), 1),
                             _f(p.get("finetune_epoch_seconds"), 1), _f(p.get("work_relative_to_base"), 2, "x"),
                             _f(p.get("warmup_relative_to_base"), 2, "x"), _f(p.get("finetune_relative_to_base"), 2, "x")])
        lines += ["### 6. Scaling: seconds per steady epoch (kit, conference recipe)", ""]
        lines += _table(["axis", "pixels", "training images", "phase 1 s/epoch", "phase 2 s/epoch",
                         "work (pixels x images)", "phase 1 time", "phase 2 time"], rows)

    targets_ = doc.get("targets", {})
    if targets_.get("applies"):
        rows = []
        names = {"conference_wall_seconds": "conference profile wall time (s)",
                 "steady_training_speedup": "steady training images/s, kit / paper",
                 "conference_peak_memory_gb": "peak memory of the conference run (GB)"}
        for key, label in names.items():
            t = targets_.get(key)
            if t:
                comparison = "<=" if key != "steady_training_speedup" else ">="
                rows.append([label, _f(t["value"], 2), f"{comparison} {t['target']}", "met" if t["met"] else "MISSED"])
        lines += ["### Targets", ""] + _table(["target", "measured", "wanted", ""], rows)
    return "\n".join(lines).rstrip() + "\n"
