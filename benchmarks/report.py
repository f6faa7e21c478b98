"""Turn the raw job results into the benchmark's sections, target checks and a Markdown table."""

from __future__ import annotations

#: The issues' targets on a 2-core CPU at 299x299.
TARGET_CONFERENCE_SECONDS = 120.0  # whole conference profile (group 1, augmentation on), start-up included
TARGET_SPEEDUP = 1.5  # kit's steady training images/s over the paper recipe's
TARGET_PEAK_BYTES = 2.5e9  # resident memory of every kit profile

#: The kit's runs whose memory is judged (every profile), and how the tables name them.
KIT_RUNS = {
    "kit_conference": "conference, group 1A (augmentation on), feature cache",
    "kit_conference_group2": "conference, group 2A (augmentation off), feature cache",
    "kit_conference_uncached": "conference, group 1A, whole network fit (no cache)",
    "kit_conference_group2_uncached": "conference, group 2A, whole network fit (no cache)",
    "kit_paper_profile": "paper profile (20 epochs, all trainable: nothing to cache)",
    "kit_smoke": "smoke profile (no pretrained weights, 1 + 1 epochs)",
}
CACHE_PAIRS = (("kit_conference", "kit_conference_uncached"),
               ("kit_conference_group2", "kit_conference_group2_uncached"))


CONFERENCE_RUNS = ("kit_conference", "kit_conference_group2", "kit_conference_uncached",
                   "kit_conference_group2_uncached")


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


END_TO_END_RUNS = (*KIT_RUNS, "paper_recipe")


def _load(job: dict) -> str:
    """The 1-minute load average before -> after a measurement (the machine is shared)."""
    before, after = job.get("load_before"), job.get("load_after")
    return "–" if before is None else f"{before[0]:.1f} → {after[0]:.1f}"


def _run_label(name: str, result: dict) -> str:
    if name == "paper_recipe":
        return f"paper's recipe ({result['epochs']} epochs, all trainable; + TEST predictions)"
    epochs = (f"{result['warmup_epochs']} frozen + {result['finetune_epochs']} fine-tune epochs"
              if result["warmup_epochs"] else f"{result['finetune_epochs']} epochs, all trainable")
    what = KIT_RUNS.get(name, f"{result['profile']} profile")
    return f"kit, {what} ({epochs}; {' + '.join(result['stage_seconds'])})"


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
            "cpu_seconds": job.get("cpu_seconds"),
            "stage_seconds": job["result"]["stage_seconds"],
            "peak_rss_mb": job["peak_rss_mb"],
            "load": _load(job),
        }
    wall = {name: row["wall_seconds"] for name, row in rows.items()}
    return {
        "runs": rows,
        "ratio_conference_vs_paper_profile": _ratio(wall.get("kit_conference"), wall.get("kit_paper_profile")),
        "ratio_conference_vs_paper_recipe": _ratio(wall.get("kit_conference"), wall.get("paper_recipe")),
    }


def memory_section(doc: dict) -> dict:
    out = {}
    for name, job in doc["jobs"].items():
        if not job.get("ok"):
            continue
        out[name] = {"peak_rss_mb": job.get("peak_rss_mb"), "polled_peak_rss_mb": job.get("polled_peak_rss_mb"),
                     "after_stage_mb": (job.get("result") or {}).get("peak_rss_mb_after"), "load": _load(job)}
    return out


def cache_section(doc: dict) -> dict:
    """Per phase of the conference runs: group 1 vs group 2, feature cache on vs off."""
    rows = []
    for name in CONFERENCE_RUNS:
        job = doc["jobs"].get(name)
        if not job or not job.get("ok"):
            continue
        result = job["result"]
        kit_phases = {p["phase"]: p for p in result.get("kit_phases", [])}
        for number, phase in ((1, "warmup"), (2, "finetune")):
            summary = _phase(result, phase) or {}
            record = (kit_phases.get(number) or {}).get("feature_cache")
            rows.append({
                "run": name, "group": result.get("experiment_group"), "cached": bool(result.get("feature_cache")),
                "phase": number,
                "training": (record or {}).get("training", "whole network"),
                "stored_seconds": (record or {}).get("seconds"),
                "phase_seconds": result.get("kit_timings", {}).get(f"phase{number}_seconds"),
                "steady_epoch_seconds": summary.get("steady_epoch_seconds"),
                "steady_epoch_cpu_seconds": summary.get("steady_epoch_cpu_seconds"),
                "steady_images_per_second": summary.get("steady_images_per_second"),
                "first_epoch_overhead_seconds": summary.get("first_epoch_overhead_seconds"),
                "first_epoch_breakdown": summary.get("first_epoch_breakdown"),
                "load": _load(job),
            })
    by_key = {(r["run"], r["phase"]): r for r in rows}
    ratios = {}
    for cached, plain in CACHE_PAIRS:
        for number in (1, 2):
            a, b = by_key.get((cached, number)), by_key.get((plain, number))
            if a and b:
                ratios[f"{cached}_phase{number}_seconds_vs_uncached"] = _ratio(a["phase_seconds"], b["phase_seconds"])
        walls = [doc["jobs"].get(n, {}).get("wall_seconds") if doc["jobs"].get(n, {}).get("ok") else None
                 for n in (cached, plain)]
        ratios[f"{cached}_wall_vs_uncached"] = _ratio(*walls)
    group1, group2 = (doc["jobs"].get(n) for n in ("kit_conference", "kit_conference_group2"))
    if group1 and group2 and group1.get("ok") and group2.get("ok"):
        ratios["group2_wall_vs_group1"] = _ratio(group2["wall_seconds"], group1["wall_seconds"])
    return {"phases": rows, "ratios": ratios}


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
    "cache": cache_section,
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
    jobs = doc["jobs"]

    def ok(name: str) -> dict | None:
        job = jobs.get(name)
        return job if job and job.get("ok") else None

    conference = ok("kit_conference")
    if conference:
        out["conference_wall_seconds"] = {"value": conference["wall_seconds"], "target": TARGET_CONFERENCE_SECONDS,
                                          "met": conference["wall_seconds"] <= TARGET_CONFERENCE_SECONDS}
    group2 = ok("kit_conference_group2")
    if group2 and conference:
        # "Well below" group 1: judged here as at most three quarters of it.
        limit = round(0.75 * conference["wall_seconds"], 1)
        out["group2_wall_seconds"] = {"value": group2["wall_seconds"], "target": limit,
                                      "met": group2["wall_seconds"] <= limit}
    peaks = {name: ok(name)["peak_rss_mb"] * 1e6 for name in KIT_RUNS if ok(name)}
    if peaks:
        worst = max(peaks, key=peaks.get)
        out["kit_peak_memory_gb"] = {"value": round(peaks[worst] / 1e9, 2), "target": TARGET_PEAK_BYTES / 1e9,
                                     "met": peaks[worst] <= TARGET_PEAK_BYTES, "run": worst}
    for cached, plain in CACHE_PAIRS:
        if ok(cached) and ok(plain):
            ratio = ok(cached)["wall_seconds"] / ok(plain)["wall_seconds"]
            out[f"{cached}_vs_uncached"] = {"value": round(ratio, 3), "target": 1.0, "met": ratio <= 1.0}
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
             f"Image size {plan['image_size']}x{plan['image_size']}, batch {plan['batch_size']}; the kit's runs "
             "take the pretrained path with a random same-layout weights file (speed does not depend on weight "
             "values), the smoke profile its own weights none. Load: the 1-minute load average before → after "
             "each measurement.", ""]

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
            rows.append([r["label"], _f(r["wall_seconds"], 0), _f(r["cpu_seconds"], 0), stages,
                         _f(r["peak_rss_mb"] / 1000, 2), r["load"]])
        lines += ["### 3-4. End to end (one process: Python and TensorFlow start-up included) and peak memory", ""]
        lines += _table(["run", "wall s", "CPU s", "stages s", "peak RSS GB", "load"], rows)
        lines += [f"Conference / paper profile wall time: {_f(e['ratio_conference_vs_paper_profile'], 2, 'x')}; "
                  f"conference / paper recipe: {_f(e['ratio_conference_vs_paper_recipe'], 2, 'x')}.", ""]

    if "cache" in s:
        c = s["cache"]
        rows = []
        for r in c["phases"]:
            b = r["first_epoch_breakdown"] or {}
            rows.append([KIT_RUNS.get(r["run"], r["run"]), r["phase"], r["training"], _f(r["stored_seconds"], 1),
                         _f(r["phase_seconds"], 1), _f(r["steady_epoch_seconds"], 2),
                         _f(r["steady_epoch_cpu_seconds"], 1), _f(r["steady_images_per_second"], 1),
                         _f(r["first_epoch_overhead_seconds"], 1),
                         " / ".join(_f(b.get(k), 1) for k in ("training_step_tracing", "validation_tracing",
                                                               "first_save_and_logs", "rest")), r["load"]])
        lines += ["### Feature cache: group 1 vs group 2, cached vs uncached, per phase", ""]
        lines += _table(["run", "phase", "training batches", "stored values s", "phase s", "steady epoch s",
                         "steady epoch CPU s", "training images/s", "first-epoch overhead s",
                         "of which: train-step tracing / validation tracing / first save / rest", "load"], rows)
        lines += ["Ratios: " + ", ".join(f"{k} {_f(v, 2, 'x')}" for k, v in c["ratios"].items()) + ".", ""]

    if "memory" in s:
        rows = []
        for name, label in {**KIT_RUNS, "paper_recipe": "paper's recipe"}.items():
            r = s["memory"].get(name)
            if not r:
                continue
            after = r.get("after_stage_mb") or {}
            rows.append([label, _f(r["peak_rss_mb"] / 1000, 2),
                         ", ".join(f"{k} {v / 1000:.2f}" for k, v in after.items()), r["load"]])
        lines += ["### Peak resident memory per profile (GB; high-water mark after each stage)", ""]
        lines += _table(["run", "peak RSS GB", "after each stage", "load"], rows)

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
        names = {"conference_wall_seconds": "conference profile (group 1A) end to end, wall s",
                 "group2_wall_seconds": "conference group 2A end to end, wall s (well below group 1A: <= 3/4)",
                 "kit_peak_memory_gb": "largest peak RSS of every kit profile, GB",
                 "kit_conference_vs_uncached": "group 1A wall time, cached / uncached",
                 "kit_conference_group2_vs_uncached": "group 2A wall time, cached / uncached",
                 "steady_training_speedup": "steady training images/s, kit / paper"}
        for key, label in names.items():
            t = targets_.get(key)
            if t:
                comparison = "<=" if key != "steady_training_speedup" else ">="
                if key == "kit_peak_memory_gb":
                    label += f" ({KIT_RUNS.get(t['run'], t['run'])})"
                rows.append([label, _f(t["value"], 2), f"{comparison} {t['target']}", "met" if t["met"] else "MISSED"])
        lines += ["### Targets", ""] + _table(["target", "measured", "wanted", ""], rows)
    return "\n".join(lines).rstrip() + "\n"
