"""SVG snapshots of every screen on the fixed fleet (tests/console/fixed_fleet.py), one engine
shared by all of them, clocks pinned to FIXED_NOW. Update with `--snapshot-update` after
checking the pictures; each docstring says what the picture must show."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Label

from console.app import EngineLink
from console.screens.base import FleetdeckScreen
from console.screens.confirm import ConfirmScreen
from console.screens.job import JobScreen
from console.screens.node import NodeScreen
from console.screens.reports import ReportsScreen
from console.screens.submit import SubmitScreen
from console.widgets.heatmap import GpuHeatmap
from console.widgets.keyed_table import KeyedTable
from console.widgets.summary import SummaryBar
from tests.console.conftest import SNAP_SIZE, fixed_app, settle, wait_for

Snap = Callable[..., bool]


def header_ready(pilot: Pilot[int]) -> Any:
    return wait_for(pilot, lambda: all(b.summary for b in pilot.app.screen.query(SummaryBar)),
                    what="the header")


def rows(table_id: str, n: int) -> Callable[[Pilot[int]], Any]:
    async def step(pilot: Pilot[int]) -> None:
        await header_ready(pilot)
        table = pilot.app.screen.query_one(f"#{table_id}", KeyedTable)
        await wait_for(pilot, lambda: table.row_count >= n, what=f"{n} rows in {table_id}")
    return step


def keys(*pressed: str) -> Callable[[Pilot[int]], Any]:
    async def step(pilot: Pilot[int]) -> None:
        await pilot.press(*pressed)
        await pilot.pause(0.1)
    return step


def until(cond: Callable[[Pilot[int]], bool], what: str) -> Callable[[Pilot[int]], Any]:
    async def step(pilot: Pilot[int]) -> None:
        await wait_for(pilot, lambda: cond(pilot), what=what)
    return step


def test_fleet(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Fleet table: header with GPU 2.25/10 allocated and CPU totals, 2 up / 1 degraded /
    1 unreachable, queue 2, running 2, `as of 12:00:00` (the last refresh); four nodes
    sorted by name with state colours
    (cpu-c01 unreachable in red, gpu-a02 `up ⊘` cordoned, gpu-b01 degraded in yellow),
    labels, CPU %, memory, per-GPU utilization blocks, GPU memory, power, last seen
    (cpu-c01 15m00s ago); the footer lists / h c and the screen keys 1-5, s, ?."""
    assert snap_compare(fixed_app(fixed_link), terminal_size=SNAP_SIZE,
                        run_before=settle(rows("fleet-table", 4)))


def test_fleet_80x24(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Fleet at 80x24: the header keeps to two rows (breadcrumb and GPU allocation; then
    nodes up/degraded/unreachable and queue 2 · running 2); the table keeps Node, State,
    CPU%, GPUs, GPU util and GPU mem, leaving out Labels, Pool, Power and Seen first; the
    header letters of the columns are underlined (Shift+letter sorts)."""
    assert snap_compare(fixed_app(fixed_link), terminal_size=(80, 24),
                        run_before=settle(rows("fleet-table", 4)))


def test_jobs_100x30(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Jobs at 100x30: header in two rows (the nodes/queue line and `as of 12:00:00` kept);
    the table shows ID, Name, User, State and Reason: the lower-priority columns (Project,
    GPUs, Node, Pool, Runtime, Util, Idle) give way so big-pretrain's reason shows in full
    ("needs 4 x A100-80GB, largest free block is 1 on node gpu-a01"); no column is cut."""
    assert snap_compare(fixed_app(fixed_link, "jobs"), terminal_size=(100, 30),
                        run_before=settle(rows("jobs-table", 7)))


def test_jobs_250x60_sorted(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Jobs at 250x60, sorted by runtime (R, longest first, `Runtime▼` in the header): every
    column shown, the reasons whole ("waiting: needs 4 x A100-80GB, largest free block is 1
    on node gpu-a01"); rows train-resnet 2h59m, notebook-ann, old-notebook, eval-sweep, the
    queued big-pretrain and cpu-etl (their time waiting, dim), bad-config 50s last."""
    assert snap_compare(fixed_app(fixed_link, "jobs"), terminal_size=(250, 60),
                        run_before=settle(rows("jobs-table", 7), keys("R")))


def test_fleet_heatmap(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Heatmap (h): the legend line, then one line per node with one coloured cell per GPU
    (gpu-a01 and gpu-a02 four cells, gpu-b01 two, cpu-c01 `no GPUs`), the cursor on the first
    node."""
    def heat_ready(pilot: Pilot[int]) -> bool:
        return len(pilot.app.screen.query_one(GpuHeatmap).rows) == 4

    assert snap_compare(fixed_app(fixed_link), terminal_size=SNAP_SIZE,
                        run_before=settle(rows("fleet-table", 4), keys("h"),
                                          until(heat_ready, "heatmap rows")))


def test_node(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Node gpu-a01 (Enter on the second Fleet row): info lines (up, pool train, zone=a,
    64 cores, memory, seen 0s ago), the GPU table (4 x A100-80GB with util bars, memory,
    temperature, power, ECC 0, health ok), process and container tables that say `none`, the
    history sparklines for CPU and GPUs 0-3 over the last 30 minutes."""
    def history(pilot: Pilot[int]) -> bool:
        screen = pilot.app.screen
        return isinstance(screen, NodeScreen) and len(screen.query("#history Sparkline")) == 5

    assert snap_compare(fixed_app(fixed_link), terminal_size=SNAP_SIZE,
                        run_before=settle(rows("fleet-table", 4), keys("down", "enter"),
                                          until(history, "node history"), rows("gpus", 4)))


def test_jobs(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Jobs: the view tabs (all selected), seven jobs newest first: cpu-etl and big-pretrain
    queued (runtime dim = time waiting, their reasons), old-notebook stopped by the idle
    policy, bad-config failed with exit 2, eval-sweep succeeded, notebook-ann (0.25 GPU) and
    train-resnet (2 GPUs) running on gpu-a01 with their GPUs' utilization."""
    assert snap_compare(fixed_app(fixed_link, "jobs"), terminal_size=SNAP_SIZE,
                        run_before=settle(rows("jobs-table", 7)))


def test_jobs_filtered(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Jobs filtered with `/` to `user:bob`: only eval-sweep and bad-config remain, the filter
    line shows `user:bob` above the footer."""
    def two(pilot: Pilot[int]) -> bool:
        return pilot.app.screen.query_one(KeyedTable).row_count == 2

    assert snap_compare(fixed_app(fixed_link, "jobs"), terminal_size=SNAP_SIZE,
                        run_before=settle(rows("jobs-table", 7), keys("slash", *"user:bob"),
                                          until(two, "two rows")))


def test_job_pending(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Job 6 big-pretrain (queued): head line with state, user/project and GPUs 4; the
    pending reason `waiting: needs 4 x A100-80GB, largest free block is 1 on node gpu-a01`
    in yellow; the Spec tab with every spec field (gpu_models A100-80GB, priority 5)."""
    def loaded(pilot: Pilot[int]) -> bool:
        screen = pilot.app.screen
        return (isinstance(screen, JobScreen) and screen.row is not None
                and bool(screen.info))

    assert snap_compare(fixed_app(fixed_link, "jobs"), terminal_size=SNAP_SIZE,
                        run_before=settle(rows("jobs-table", 7), keys("down", "enter"),
                                          until(loaded, "job 6")))


def test_job_events(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Job 5 old-notebook, Events tab (e from Jobs): placement `placed on gpu-a01 GPUs 3 via
    process`, and its events queued -> starting -> running -> stopped with times, actors
    (scheduler, policy:idle) and reasons."""
    def loaded(pilot: Pilot[int]) -> bool:
        screen = pilot.app.screen
        return (isinstance(screen, JobScreen) and bool(screen.info)
                and screen.query_one("#events-table", KeyedTable).row_count == 4)

    assert snap_compare(fixed_app(fixed_link, "jobs"), terminal_size=SNAP_SIZE,
                        run_before=settle(rows("jobs-table", 7), keys("down", "down", "e"),
                                          until(loaded, "job 5 events")))


def test_submit_form(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Submit form (s) for ann: defaults from her last submission (big-pretrain: command,
    4 GPUs of A100-80GB, pool train, priority 5, executor process) and her project detector /
    team vision; the suggestion line from her history (`1 GPU`, ctrl+g applies it); `GPUs`
    edited to `1.5` shows its error under the field in red; the preview line says, in red,
    the form is invalid: fix the fields in red."""
    def defaults(pilot: Pilot[int]) -> bool:
        screen = pilot.app.screen
        return (isinstance(screen, SubmitScreen)
                and screen.query_one("#f-command").value != ""  # type: ignore[attr-defined]
                and "history" in str(screen.query_one("#suggestion").render()))

    def errored(pilot: Pilot[int]) -> bool:
        return pilot.app.screen.query_one("#e-gpus", Label).display

    async def edit_gpus(pilot: Pilot[int]) -> None:
        await pilot.press("tab", "tab", "tab", "ctrl+u", *"1.5")

    assert snap_compare(fixed_app(fixed_link), terminal_size=SNAP_SIZE,
                        run_before=settle(header_ready, keys("s"), until(defaults, "defaults"),
                                          edit_gpus, until(errored, "the GPUs error")))


def test_stop_confirm(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Stop confirmation (x on train-resnet, job 1): a dialog `Stop job 1 (train-resnet)?`
    explaining SIGTERM then SIGKILL, a reason box, Stop job and Cancel buttons."""
    def confirm(pilot: Pilot[int]) -> bool:
        return isinstance(pilot.app.screen, ConfirmScreen)

    async def last_row(pilot: Pilot[int]) -> None:
        pilot.app.screen.query_one(KeyedTable).select_key("1")
        await pilot.press("x")

    assert snap_compare(fixed_app(fixed_link, "jobs"), terminal_size=SNAP_SIZE,
                        run_before=settle(rows("jobs-table", 7), last_row,
                                          until(confirm, "the dialog")))


def test_policies(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Policies: idle GPU jobs table (with the engine's idle warnings and their evidence), the
    burst instance i-0abc (command provider, burst-1, 1 x A10G, $1.25/h, cost $2.50, up
    2h00m) and gpu-a02 in the cordoned and drained nodes table."""
    assert snap_compare(fixed_app(fixed_link, "policies"), terminal_size=SNAP_SIZE,
                        run_before=settle(rows("burst", 1), rows("cordoned", 1)))


def test_reports(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Reports: chargeback by user for the 30 days to 2024-05-01 (choice line), the table
    with titles for people (User, Jobs, GPU-hours allocated...), one row per user (ann, bob,
    burst idle) and a Total row (5 jobs, 9.32 GPU-hours allocated), the bar chart of the
    preferred numeric column by user on the right, and the report's notes below."""
    def loaded(pilot: Pilot[int]) -> bool:
        screen = pilot.app.screen
        return (isinstance(screen, ReportsScreen) and screen.loaded_key is not None
                and screen.query_one(DataTable).row_count > 0)

    assert snap_compare(fixed_app(fixed_link, "reports"), terminal_size=SNAP_SIZE,
                        run_before=settle(header_ready, until(loaded, "the report")))


def test_audit(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """Audit: newest first, the dry-run burst_provision (Dry yes), ann's cordon of gpu-a02,
    the idle_warn in yellow, the journal's submits and transitions' audit rows; the
    highlighted row's evidence ({"price_per_hour": 2.5}) below the table."""
    assert snap_compare(fixed_app(fixed_link, "audit"), terminal_size=SNAP_SIZE,
                        run_before=settle(rows("audit-table", 10)))


def test_keys_help(snap_compare: Snap, fixed_link: EngineLink) -> None:
    """`?` on Jobs: the keys dialog listing the Jobs keys (Enter, t, l, e, x, /, Esc) with
    what they do, then the keys that work everywhere (q, :, 1-5, s, ?, ctrl+r), then table
    movement and sorting (Shift+letter > < click)."""
    def shown(pilot: Pilot[int]) -> bool:
        return not isinstance(pilot.app.screen, FleetdeckScreen)

    assert snap_compare(fixed_app(fixed_link, "jobs"), terminal_size=SNAP_SIZE,
                        run_before=settle(rows("jobs-table", 7), keys("question_mark"),
                                          until(shown, "the keys")))
