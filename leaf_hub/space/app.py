"""The Gradio Space: compare a leaf with its teacher in the browser, and the ``leaf-hub space`` stage.

:func:`build_app` builds the whole app from two models (loaded once, at build time); ``space/app.py``
calls it with model ids from the environment so the same app runs on a Hugging Face Space, and
``leaf-hub space --leaf DIR --teacher ID`` runs it locally; ``leaf-hub space --export DIR`` writes a Space
folder that deploys as it is (:mod:`leaf_hub.space.export`). The numbers come from
:mod:`leaf_hub.space.compare`; this module only lays them out and turns input errors into ``gr.Error``
messages. Besides the UI, the app serves ``/compare`` (query, documents one per line -> score table) for
``gradio_client`` scripts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from leaf_hub.errors import LeafHubError

logger = logging.getLogger(__name__)

DEFAULT_TEACHER = "sentence-transformers/all-mpnet-base-v2"
# Serving on the Hub's free CPU tier (2 vCPU), measured by bench/space_load.py (bench/results/space_load.md):
# two requests at a time, each on one PyTorch thread (cores // CONCURRENCY_LIMIT, see serving_threads),
# served 4.7-4.9 short requests/s against 3.9 for two requests on two threads each and 3.3-3.6 for one at a
# time; 20 visitors x 3 requests p95 4.6 s (5.6 s, 6.3 s); and a request of the largest allowed input no
# longer stalls the short ones behind it (their p95 2.2 s beside it, against 10.1 s one at a time). The queue
# holds QUEUE_MAX_SIZE waiting requests, about 4 s of short work at that rate; a visitor beyond it is told
# the queue is full at once: with 40 visitors x 3 requests, the served ones' p95 was 7.7 s (54 of 120 turned
# away) against 10.1 s for a queue of 64 (bench/results/space_load_queue.md).
CONCURRENCY_LIMIT = 2
QUEUE_MAX_SIZE = 20
CSS = """
#score-table td, #pair-table td { font-variant-numeric: tabular-nums; }
footer { visibility: hidden; }
"""


def _load(model_or_name, name: str | None, role: str) -> tuple[Any, str]:
    """A loaded model and its display name, from a model object or a Hub id / folder.

    The page names a model by its Hub id or its folder's name: a local path says nothing to a visitor.
    """
    from leaf_hub.models import load_model, model_id
    from leaf_hub.space.compare import display_name

    if isinstance(model_or_name, (str, os.PathLike)):
        return load_model(model_or_name), name or display_name(str(model_or_name))
    found = model_id(model_or_name)
    return model_or_name, name or (display_name(found) if found != "unknown" else f"{role} (in memory)")


def _slider_step(dim: int) -> int:
    return next((s for s in (32, 16, 8) if dim % s == 0 and dim >= 4 * s), 1)


def build_app(
    leaf,
    teacher,
    report_dir: str | Path | None = None,
    *,
    leaf_name: str | None = None,
    teacher_name: str | None = None,
    concurrency_limit: int | None = None,
    max_queue: int | None = None,
):
    """Build the Space: load both models once and return the ``gr.Blocks`` (not launched, queue set).

    ``leaf`` and ``teacher`` are Hub ids, folders or loaded SentenceTransformers (then ``*_name`` names
    them on the page). Report files come from ``report_dir``, else the leaf's folder or Hub repo.
    ``concurrency_limit`` (requests computed at once) and ``max_queue`` (requests waiting beyond those, the
    rest are turned away) default to :data:`CONCURRENCY_LIMIT` and :data:`QUEUE_MAX_SIZE`.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from leaf_hub.space import compare as C

    leaf_model, leaf_name = _load(leaf, leaf_name, "leaf")
    teacher_model, teacher_name = _load(teacher, teacher_name, "teacher")
    full_dim = C.check_models(teacher_model, leaf_model)
    if isinstance(leaf, (str, os.PathLike)) or report_dir:
        reports = C.load_reports(leaf if isinstance(leaf, (str, os.PathLike)) else "", report_dir)
    else:  # an in-memory leaf has no folder or repo to read reports from
        reports = {**dict.fromkeys(C.REPORT_FILES), "notes": []}
    facts = C.card_facts(teacher_model, leaf_model, reports, teacher_name, leaf_name)
    eval_headers, eval_data = C.eval_rows(reports.get("eval_report.json"))
    mrl_headers, mrl_data = C.mrl_rows(reports.get("eval_report.json"))
    logger.info("calibrating int8 buckets on the example texts")
    calibration = C.calibration_embeddings(teacher_model)
    warm = C.warm_up(teacher_model, leaf_model)
    logger.info("warmed up: teacher %.0f ms, leaf %.0f ms", 1000 * warm["teacher"], 1000 * warm["leaf"])
    step = _slider_step(full_dim)

    def as_gr_error(exc: LeafHubError) -> gr.Error:
        # An input error is the visitor's to fix, not a server fault: no traceback in the logs.
        return gr.Error(str(exc), print_exception=False)

    def run_compare(query: str, documents_text: str, dimensions: float, precision: str):
        try:
            query = C.check_text(query, "query")
            documents = C.parse_documents(documents_text)
            embedded = C.embed_comparison(teacher_model, leaf_model, query, documents)
            table = C.score(embedded, teacher_model, leaf_model, int(dimensions), precision, calibration)
        except LeafHubError as exc:
            raise as_gr_error(exc) from exc
        return {"headers": table.headers, "data": table.rows}, C.agreement_markdown(table), embedded

    def rescore(embedded, dimensions: float, precision: str):
        # The slider and the toggle only rescore the stored embeddings: no model runs again.
        if embedded is None:
            return gr.skip(), gr.skip()
        try:
            table = C.score(embedded, teacher_model, leaf_model, int(dimensions), precision, calibration)
        except LeafHubError as exc:
            raise as_gr_error(exc) from exc
        return {"headers": table.headers, "data": table.rows}, C.agreement_markdown(table)

    def run_pair(sentence1: str, sentence2: str, dimensions: float, precision: str):
        try:
            sims = C.pair_similarity(
                teacher_model, leaf_model, sentence1, sentence2, int(dimensions), precision, calibration
            )
        except LeafHubError as exc:
            raise as_gr_error(exc) from exc
        return {"headers": ["model", "cosine"], "data": [[k, round(v, C.DECIMALS)] for k, v in sims.items()]}

    def compare_api(
        query: str, documents_text: str, dimensions: int = 0, precision: str = "none"
    ) -> dict[str, Any]:
        """Score documents (one per line) for a query under teacher, leaf and asymmetric pair.

        Returns {"headers": [...], "data": [[#, document, teacher, rank, leaf, rank, asymmetric, rank]],
        "agreement": {...}, "seconds": {...}}. dimensions 0 keeps all; precision none, int8 or binary.
        """
        try:
            table = C.compare(
                teacher_model, leaf_model, query, documents_text, dimensions or None, precision, calibration
            )
        except LeafHubError as exc:
            raise as_gr_error(exc) from exc
        return table.as_dict()

    with gr.Blocks(title="leaf vs teacher", analytics_enabled=False) as demo:
        gr.Markdown(
            f"# Leaf vs teacher\n"
            f"The leaf `{leaf_name}` ({C.human_count(facts['leaf_params'])} parameters) embeds into the "
            f"vector space of its teacher `{teacher_name}` ({C.human_count(facts['teacher_params'])}), so "
            "its query embeddings can search documents the teacher embedded. Compare the three side by side."
        )
        with gr.Row():
            dim_slider = gr.Slider(
                minimum=step,
                maximum=full_dim,
                value=full_dim,
                step=step,
                label="Matryoshka dimensions (truncate, then re-normalize)",
                elem_id="dimensions",
            )
            precision_radio = gr.Radio(
                choices=[("none (float32)", "none"), ("int8", "int8"), ("binary", "binary")],
                value="none",
                label="Quantization",
                elem_id="precision",
            )
        with gr.Tabs():
            with gr.Tab("Compare rankings", id="compare"):
                with gr.Row():
                    query_box = gr.Textbox(
                        label="Query", lines=2, max_lines=4, elem_id="query", placeholder="Type a query"
                    )
                    docs_box = gr.Textbox(
                        label=f"Documents, one per line (at most {C.MAX_DOCUMENTS}, {C.MAX_CHARS} characters each)",
                        lines=6,
                        max_lines=C.MAX_DOCUMENTS,
                        elem_id="documents",
                        placeholder="One document per line",
                    )
                compare_button = gr.Button("Compare", variant="primary", elem_id="compare-button")
                gr.Examples(
                    examples=[list(example) for example in C.EXAMPLES],
                    inputs=[query_box, docs_box],
                    label="Ready examples",
                )
                table = gr.Dataframe(
                    headers=C.TABLE_HEADERS,
                    datatype=["number", "str", "number", "number", "number", "number", "number", "number"],
                    label="Cosine scores and ranks (asymmetric: leaf query against teacher documents)",
                    interactive=False,
                    wrap=True,
                    elem_id="score-table",
                    column_widths=["5%", "35%", "10%", "10%", "10%", "10%", "10%", "10%"],
                )
                gr.Markdown(C.ASYMMETRIC_NOTE, elem_id="asymmetric-note")
                agreement = gr.Markdown(elem_id="agreement")
                embedded_state = gr.State(None)
            with gr.Tab("Sentence pair", id="pair"):
                with gr.Row():
                    s1 = gr.Textbox(label="Sentence 1", elem_id="sentence1")
                    s2 = gr.Textbox(label="Sentence 2", elem_id="sentence2")
                pair_button = gr.Button("Compare the pair", variant="primary", elem_id="pair-button")
                gr.Markdown("_leaf ↔ teacher: the leaf embeds sentence 1, the teacher sentence 2._")
                gr.Examples(examples=[list(p) for p in C.PAIR_EXAMPLES], inputs=[s1, s2], label="Examples")
                pair_table = gr.Dataframe(
                    headers=["model", "cosine"],
                    datatype=["str", "number"],
                    label="Cosine similarity",
                    interactive=False,
                    elem_id="pair-table",
                )
            with gr.Tab("Card facts", id="facts"):
                gr.Markdown(C.facts_markdown(facts), elem_id="facts")
                if eval_data:
                    gr.Markdown("**Evaluation** (from `eval_report.json`)")
                    gr.Dataframe(value={"headers": eval_headers, "data": eval_data}, interactive=False)
                else:
                    gr.Markdown("_No `eval_report.json` next to the leaf: run `leaf-hub evaluate`._")
                if mrl_data:
                    gr.Markdown("**Matryoshka truncation and quantization** (from `eval_report.json`)")
                    gr.Dataframe(value={"headers": mrl_headers, "data": mrl_data}, interactive=False)

        view_inputs = [embedded_state, dim_slider, precision_radio]
        compare_inputs = [query_box, docs_box, dim_slider, precision_radio]
        compare_outputs = [table, agreement, embedded_state]
        compare_button.click(run_compare, compare_inputs, compare_outputs, api_visibility="private")
        query_box.submit(run_compare, compare_inputs, compare_outputs, api_visibility="private")
        for control in (dim_slider, precision_radio):
            # Rescoring is cheap (no model runs); always_last drops the stale steps of a slider drag.
            control.change(
                rescore,
                view_inputs,
                [table, agreement],
                api_visibility="private",
                trigger_mode="always_last",
                show_progress="hidden",
            )
        pair_button.click(
            run_pair, [s1, s2, dim_slider, precision_radio], pair_table, api_name="pair_similarity"
        )
        gr.api(compare_api, api_name="compare")

    demo.queue(
        default_concurrency_limit=concurrency_limit or CONCURRENCY_LIMIT,
        max_size=QUEUE_MAX_SIZE if max_queue is None else max_queue,
    )
    return demo


def serving_threads(concurrency_limit: int | None = None) -> int:
    """Give PyTorch ``cores // concurrency_limit`` intra-op threads (at least 1) for serving; returns it.

    Requests computed side by side each with every core's worth of threads oversubscribe the CPU (each
    operator waits for threads the other request holds): one thread each served 25% more requests on 2
    vCPU (see :data:`CONCURRENCY_LIMIT`). Call it in the serving process only, before launching.
    """
    import torch

    threads = max(1, (os.cpu_count() or 1) // (concurrency_limit or CONCURRENCY_LIMIT))
    torch.set_num_threads(threads)
    return threads


def launch_kwargs() -> dict[str, Any]:
    """Arguments of ``demo.launch`` that gradio 6 takes there instead of in ``gr.Blocks``."""
    return {"css": CSS}
