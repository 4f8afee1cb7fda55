"""Submit: a modal form for every job-spec field, validated as you type, with a suggestion from
your history and a live preview of where the job would be placed now.

Validation is the scheduler's own (`JobSpec.from_mapping`, pure): each field is checked alone so
every bad field shows its error under it, then the whole spec for cross-field rules (an image
with the docker executor). Enter in any field, or ctrl+s, submits; Esc cancels.

The last command is pre-filled selected, so typing replaces it; keys typed before the form
is ready go into the command; the preview follows every edit (a reply for an older edit is
dropped) and the fleet (asked again every few seconds), and says when a field is red or the
job can never fit, which the engine refuses.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from collectors.errors import InputError
from collectors.formatting import bytes_exact, duration_exact
from console.engine.api.replies import Preview, Suggestion
from console.engine.api.requests import JobsQuery, PreviewRequest, SubmitRequest, SuggestQuery
from console.engine.client import RemoteError, failure_text
from console.messages import JobsSubmitted
from console.screens.dialog import DialogScreen
from scheduler.jobspec import EXECUTORS, KINDS, JobSpec

SOURCE = "form"
PREVIEW_DELAY_S = 0.4
PREVIEW_REFRESH_S = 3.0  # the preview follows the fleet too, not only edits
# (key, label, placeholder); order is the form's order
TEXT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("command", "Command", "python train.py --lr 0.1"),
    ("name", "Name", "from the command"),
    ("image", "Image", "docker only: pytorch/pytorch:2.3"),
    ("gpus", "GPUs", "0, 1, 2... or 0.25 of one"),
    ("gpu_models", "GPU models", "A100,H100 (any if empty)"),
    ("min_gpu_mem", "Min GPU mem", "40GiB"),
    ("cpus", "CPUs", "1"),
    ("mem", "Memory", "16GiB"),
    ("pool", "Pool", "any"),
    ("node", "Node", "any"),
    ("labels", "Labels", "zone=a,disk=ssd"),
    ("priority", "Priority", "0"),
    ("max_runtime", "Max runtime", "2h (enables backfill)"),
    ("retries", "Retries", "0"),
    ("array", "Array tasks", "1"),
    ("env", "Env", "KEY=VALUE, KEY2=VALUE"),
    ("workdir", "Workdir", "/abs/path"),
    ("user", "User", ""),
    ("project", "Project", ""),
    ("team", "Team", ""),
)
SELECTS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("executor", "Executor", EXECUTORS, "auto"),
    ("kind", "Kind", KINDS, "batch"),
)
CHECKS: tuple[tuple[str, str], ...] = (("shell", "Run through a shell"),
                                       ("protect", "Protect from idle stop"))
ALL_KEYS = (*(k for k, _, _ in TEXT_FIELDS), *(k for k, *_ in SELECTS), *(k for k, _ in CHECKS))


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]


def form_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """Form values (strings, bools) as a job mapping for `JobSpec.from_mapping`."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            if value:
                out[key] = True
            continue
        text = str(value).strip()
        if not text:
            continue
        if key in ("gpu_models", "env"):
            out[key] = _split(text)
        else:
            out[key] = text
    return out


def field_of(err: InputError) -> str:
    key = (err.key or "").split(".")[0].lstrip("-").replace("-", "_")
    return key if key in ALL_KEYS else ""


def check_field(key: str, mapping: Mapping[str, Any]) -> str | None:
    """The error of field `key` checked on its own (None if fine or empty)."""
    if key not in mapping:
        return None
    data: dict[str, Any] = {"command": "true", key: mapping[key]}
    if key == "command":
        data["shell"] = mapping.get("shell", False)
    if key in ("gpu_models", "min_gpu_mem"):
        data["gpus"] = mapping.get("gpus", 1) or 1
    if key == "image":
        data["executor"] = "docker"
    try:
        JobSpec.from_mapping(data, SOURCE)
    except InputError as e:
        if field_of(e) in (key, ""):
            return _short(e)
    return None


def _short(err: InputError) -> str:
    return str(err).removeprefix(f"{SOURCE}: ").removeprefix(f"{err.key}: ")


def validate(values: Mapping[str, Any], *, final: bool = False,
             ) -> tuple[JobSpec | None, dict[str, str], str]:
    """(spec or None, field -> error, general error). A missing command is only an error when
    submitting (`final`), not while the form is being filled in."""
    mapping = form_mapping(values)
    errors = {k: e for k in ALL_KEYS if (e := check_field(k, mapping)) is not None}
    if "command" not in mapping:
        if final:
            errors["command"] = "required: the command to run"
        return None, errors, ""
    if errors:
        return None, errors, ""
    try:
        return JobSpec.from_mapping(mapping, SOURCE), {}, ""
    except InputError as e:
        key = field_of(e)
        if key:
            return None, {key: _short(e)}, ""
        return None, {}, str(e)


def values_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A stored spec (`JobSpec.to_dict` shape) as form values (the last submission's defaults)."""
    cmd = spec.get("command") or []
    shell = bool(spec.get("shell"))
    command = (cmd[0] if cmd else "") if shell else shlex.join(str(c) for c in cmd)
    gpus = spec.get("gpus") or 0

    def pairs(m: object) -> str:
        return ", ".join(f"{k}={v}" for k, v in m.items()) if isinstance(m, dict) else ""

    return {
        "command": command, "shell": shell, "image": spec.get("image") or "",
        "gpus": (f"{gpus:g}" if gpus else ""), "gpu_models": ",".join(spec.get("gpu_models") or []),
        "min_gpu_mem": bytes_exact(spec.get("min_gpu_mem_bytes")),
        "cpus": f"{spec['cpus']:g}" if spec.get("cpus") not in (None, 1, 1.0) else "",
        "mem": bytes_exact(spec.get("mem_bytes")), "pool": spec.get("pool") or "",
        "node": spec.get("node") or "", "labels": pairs(spec.get("labels")),
        "priority": str(spec["priority"]) if spec.get("priority") else "",
        "max_runtime": duration_exact(spec.get("max_runtime_s")),
        "retries": str(spec["retries"]) if spec.get("retries") else "",
        "env": pairs(spec.get("env")), "workdir": spec.get("workdir") or "",
        "executor": spec.get("executor") or "auto", "kind": spec.get("kind") or "batch",
        "protect": bool(spec.get("protect")),
        "project": spec.get("project") or "", "team": spec.get("team") or "",
    }


class SubmitScreen(DialogScreen[list[int]]):
    """The submit form."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Submit"),
        Binding("ctrl+g", "apply_suggestion", "Use suggestion"),
    ]

    class Defaults(Message):
        """The user's last submission (spec) and the engine's GPU suggestion."""

        def __init__(self, last: dict[str, Any] | None, suggestion: Suggestion | None,
                     ) -> None:
            super().__init__()
            self.last = last
            self.suggestion = suggestion

    class Previewed(Message):
        """Where the job would be placed now (`preview`), or why it is not shown."""

        def __init__(self, spec: dict[str, Any] | None, result: Preview | None,
                     note: str = "") -> None:
            super().__init__()
            self.spec = spec  # what was previewed: a reply for an older edit is dropped
            self.result = result
            self.note = note

    class Rejected(Message):
        """The engine refused the submission (one line)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self) -> None:
        super().__init__()
        self.suggestion: Suggestion | None = None
        self._preview_timer: Timer | None = None
        self._spec: JobSpec | None = None
        self._busy = False
        self._typed = ""  # keys typed before the command field had focus
        self._touched = False  # the user changed the command: defaults never overwrite it
        self._edited = False  # an edit's preview is due (the refresh leaves it to that)
        self._asking = False  # a preview is in flight

    def compose(self) -> ComposeResult:
        with Vertical(id="submit-dialog"):
            yield Label("Submit a job   [dim]Enter or ctrl+s submits · Esc cancels[/]",
                        id="submit-title")
            yield Static("", id="suggestion")
            with VerticalScroll(id="submit-form"), Grid(id="submit-grid"):
                for key, label, placeholder in TEXT_FIELDS:
                    with Vertical(classes="field"):
                        with Horizontal(classes="field-row"):
                            yield Label(label, classes="field-label")
                            yield Input(placeholder=placeholder, id=f"f-{key}")
                        yield Label("", id=f"e-{key}", classes="field-error")
                for key, label, options, default in SELECTS:
                    with Vertical(classes="field"):
                        with Horizontal(classes="field-row"):
                            yield Label(label, classes="field-label")
                            yield Select([(o, o) for o in options], value=default,
                                         allow_blank=False, id=f"f-{key}", compact=True)
                        yield Label("", id=f"e-{key}", classes="field-error")
                for key, label in CHECKS:
                    with Vertical(classes="field"):
                        yield Checkbox(label, id=f"f-{key}", compact=True)
                        yield Label("", id=f"e-{key}", classes="field-error")
            yield Static("", id="form-error")
            yield Static("preview: fill in a command", id="preview")
            with Horizontal(id="submit-buttons"):
                yield Button("Submit", variant="primary", id="yes")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        for key in ALL_KEYS:
            self.query_one(f"#e-{key}", Label).display = False
        self.query_one("#form-error").display = False
        self._set_defaults(None)
        command = self.query_one("#f-command", Input)
        command.focus()
        if self._typed:
            command.insert_text_at_cursor(self._typed)
            self._typed = ""
        self.load_defaults()
        self.set_interval(PREVIEW_REFRESH_S, self._refresh_preview)

    def on_key(self, event: events.Key) -> None:
        """Keys that arrive before the form has focus go into the command, not lost."""
        if self.focused is None and event.is_printable and event.character:
            event.stop()
            event.prevent_default()
            command = self.query("#f-command").first(Input) if self.is_mounted else None
            if command is None:
                self._typed += event.character
            else:
                command.focus()
                command.insert_text_at_cursor(event.character)

    # -- values ----------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, _, _ in TEXT_FIELDS:
            out[key] = self.query_one(f"#f-{key}", Input).value
        for key, *_ in SELECTS:
            out[key] = str(self.query_one(f"#f-{key}", Select).value)
        for key, _ in CHECKS:
            out[key] = self.query_one(f"#f-{key}", Checkbox).value
        return out

    def set_values(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            widget = self.query(f"#f-{key}")
            if not widget:
                continue
            w = widget.first()
            if isinstance(w, Input | Select):
                w.value = str(value)
            elif isinstance(w, Checkbox):
                w.value = bool(value)

    def _set_defaults(self, last: Mapping[str, Any] | None) -> None:
        cfg = self.fd.link.loaded.config
        me = next((u for u in cfg.users if u.name == self.fd.user), None)
        values: dict[str, Any] = {"user": self.fd.user}
        if me is not None:
            values["project"] = me.default_project or (me.projects[0] if me.projects else "")
            values["team"] = me.team or ""
        if last:
            values.update({k: v for k, v in values_from_spec(last).items()
                           if v not in ("", None) or k in ("shell", "protect")})
        self.set_values(values)

    @work(exclusive=True, group="submit-defaults")
    async def load_defaults(self) -> None:
        last: dict[str, Any] | None = None
        suggestion: Suggestion | None = None
        try:
            rows = await self.fd.remote.call(JobsQuery(user=self.fd.user, limit=200),
                                             channel="submit")
            mine = [r for r in rows if r.spec]
            if mine:
                last = dict(max(mine, key=lambda r: r.id).spec)
        except Exception:
            last = None
        try:
            suggestion = await self.fd.remote.call(SuggestQuery(user=self.fd.user),
                                                   channel="submit")
        except Exception:
            suggestion = None
        self.post_message(self.Defaults(last, suggestion))

    @on(Defaults)
    def _defaults(self, message: Defaults) -> None:
        command = self.query_one("#f-command", Input)
        if message.last and not command.value and not self._touched:
            self._set_defaults(message.last)
            if command.has_focus:
                command.select_all()  # typing replaces the last command
        self.suggestion = s = message.suggestion
        box = self.query_one("#suggestion", Static)
        if s is not None:
            model = f" x {s.gpu_model}" if s.gpu_model else ""
            box.update(f"From your history: [b]{s.gpus:g} GPU{model}[/b]  "
                       "[dim](ctrl+g applies it)[/]")
        else:
            box.update("[dim]No GPU suggestion from your history yet.[/]")

    def action_apply_suggestion(self) -> None:
        """Fill GPUs and GPU model from the suggestion."""
        s = self.suggestion
        if not s:
            self.notify("no suggestion from your history yet", timeout=3)
            return
        values = {"gpus": f"{float(s.gpus or 0):g}"}
        if s.gpu_model:
            values["gpu_models"] = s.gpu_model
        self.set_values(values)

    # -- validation and preview --------------------------------------------------------------
    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _changed(self, event: Message) -> None:
        if isinstance(event, Input.Changed) and event.input.id == "f-command" \
                and event.input.has_focus:
            self._touched = True
        self.revalidate()

    def revalidate(self, *, final: bool = False) -> JobSpec | None:
        spec, errors, general = validate(self.values(), final=final)
        for key in ALL_KEYS:
            label = self.query_one(f"#e-{key}", Label)
            err = errors.get(key, "")
            label.update(err)
            label.display = bool(err)
            self.query_one(f"#f-{key}").set_class(bool(err), "invalid")
        form_error = self.query_one("#form-error", Static)
        form_error.update(general)
        form_error.display = bool(general)
        self._spec = spec
        if self._preview_timer is not None:
            self._preview_timer.stop()
        box = self.query_one("#preview", Static)
        if spec is not None:
            box.update("preview: [dim]asking the engine...[/]")
            self._preview_timer = self.set_timer(PREVIEW_DELAY_S, self.preview)
            self._edited = True
        else:
            box.update("preview: [red]the form is invalid: fix the fields in red[/]"
                       if errors or general else "preview: fill in a command")
        return spec

    def preview(self) -> None:
        self._edited = False
        if self._spec is not None:
            self._asking = True
            self.run_preview(self._spec.to_dict())

    def _refresh_preview(self) -> None:
        """Ask again for an unchanged form (nodes come up, jobs end); one ask at a time."""
        if not self._asking and not self._edited:
            self.preview()

    @work(group="submit-preview")
    async def run_preview(self, spec: dict[str, Any]) -> None:
        try:
            result = await self.fd.remote.call(PreviewRequest(spec=spec), channel="submit")
        except RemoteError as e:
            note = failure_text(e, "preview")
            self.post_message(self.Previewed(spec, None, note))
            return
        except Exception as e:
            self.post_message(self.Previewed(spec, None, f"engine unreachable: {e}"))
            return
        self.post_message(self.Previewed(spec, result))

    @on(Previewed)
    def _previewed(self, message: Previewed) -> None:
        self._asking = False
        if self._spec is None or message.spec != self._spec.to_dict():
            return  # the form changed since: its own preview is on its way
        box = self.query_one("#preview", Static)
        r = message.result
        if r is None:
            box.update(f"preview: [dim]{message.note}[/]")
        elif r.placeable:
            idx = ",".join(str(i) for i in r.gpu_indices)
            box.update(f"preview: [green]would start now on [b]{r.node}[/b][/]"
                       + (f" GPUs {idx}" if idx else ""))
        elif (r.reason or "").startswith("never fits"):
            box.update(f"preview: [bold red]refused: {r.reason}[/] (change the request)")
        else:
            box.update(f"preview: [yellow]would wait: {r.reason or 'no room now'}[/]")

    # -- submit ----------------------------------------------------------------------------
    def action_submit(self) -> None:
        """Validate and queue the job."""
        spec = self.revalidate(final=True)
        if spec is None or self._busy:
            if spec is None:
                self.notify("fix the fields in red first", severity="warning", timeout=3)
            return
        self._busy = True
        self.run_submit(spec.to_dict())

    @work(exclusive=True, group="submit-send")
    async def run_submit(self, spec: dict[str, Any]) -> None:
        try:
            result = await self.fd.remote.call(SubmitRequest(spec=spec), channel="actions")
        except RemoteError as e:
            text = failure_text(e, "submit")
            self.post_message(self.Rejected(text))
            return
        except Exception as e:
            self.post_message(self.Rejected(f"engine unreachable: {e}"))
            return
        self.post_message(JobsSubmitted(result.ids))

    @on(Rejected)
    def _rejected(self, message: Rejected) -> None:
        self._busy = False
        text = message.text
        # the engine names the field like the form does ("job: gpus: expected ...")
        for key in ALL_KEYS:
            if f" {key}: " in f" {text}" or text.startswith(f"{key}: "):
                label = self.query_one(f"#e-{key}", Label)
                label.update(text.split(f"{key}: ", 1)[1])
                label.display = True
        box = self.query_one("#form-error", Static)
        box.update(text)
        box.display = True

    @on(JobsSubmitted)
    def _submitted(self, message: JobsSubmitted) -> None:
        message.stop()
        self.dismiss(message.ids)

    def action_confirm(self) -> None:
        """Validate and queue the job (Enter in a field, the Submit button)."""
        self.action_submit()
