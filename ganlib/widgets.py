"""``ConfigPanel``: ipywidgets controls generated from the config's field metadata.

One control per field, chosen from :func:`ganlib.config.field_info`:

- ``bool`` -> Checkbox; a field with ``choices`` -> Dropdown;
- ``int`` / ``float`` -> IntText / FloatText. Deliberately *unbounded*: bounded widgets silently clamp
  an out-of-range entry, whereas the panel shows the field's range next to it and reports a value
  outside it as an error (nothing the user typed is changed behind their back);
- ``str`` -> Text; ``list`` (the perceptual weights) -> Text of comma-separated numbers.

Controls are grouped by the field's ``group`` (flags, model, train, ...) in an Accordion, each with
its help text beside it and as tooltip.

Widget events are processed on the kernel thread, so nothing can react while a training cell runs:
the panel is simply *read* (``panel.value``) when a chunk starts. Nothing here waits for a click.

Only the API shared by ipywidgets 7.7 (what Colab ships) and 8 is used, and ipywidgets is imported
lazily, so ``import ganlib.widgets`` works without it.
"""
from __future__ import annotations

import html

from ganlib.config import Config, ConfigError, field_info

#: The issue's key set: the v2.2 loss flags, the architecture, the training essentials and the schedule.
DEFAULT_KEYS = (
    "loss.gan_training", "loss.use_PL", "loss.PL_before_activ", "loss.use_mask_hinge_loss", "loss.m_mask",
    "loss.lr_factor", "loss.use_cyclic_loss",
    "model.resolution", "model.model_capacity", "model.norm",
    "train.batch_size", "train.display_iters", "train.schedule", "train.TOTAL_ITERS",
)

# Accordion order; groups not listed follow in the order their first field appears.
_GROUP_ORDER = ("flags", "model", "train", "data", "optim", "weights")
_GROUP_TITLES = {
    "flags": "Loss flags (the original's loss_config)",
    "model": "Model (fixed once a run has started)",
    "train": "Training",
    "data": "Data",
    "optim": "Optimiser",
    "weights": "Loss weights",
}


def _ipywidgets():
    try:
        import ipywidgets  # noqa: PLC0415 - lazy: only notebooks need it
    except ImportError as exc:
        raise ImportError("ConfigPanel needs ipywidgets (preinstalled on Colab): pip install ipywidgets") from exc
    return ipywidgets


def _range_text(info: dict) -> str:
    lo, hi = info["min"], info["max"]
    if lo is not None and hi is not None:
        return f" [{lo:g} … {hi:g}]"
    if lo is not None:
        return f" [≥ {lo:g}]"
    if hi is not None:
        return f" [≤ {hi:g}]"
    return ""


class ConfigPanel:
    """Widgets for a chosen set of config fields; ``.value`` gives a validated :class:`Config`.

    - ``cfg``: the starting values (default ``Config()``). Fields without a control keep its values.
    - ``keys``: dotted (``"loss.use_PL"``) or bare (``"use_PL"``) field names, or ``"all"``;
      default :data:`DEFAULT_KEYS`.
    - ``.widget``: what to ``display()``.
    - ``.value``: a fresh, validated Config; an invalid entry is shown in the panel in red and raises
      :class:`ConfigError` naming the field.
    - ``.set(cfg)``: load another config into the controls.
    """

    def __init__(self, cfg: Config | None = None, keys=None):
        w = _ipywidgets()
        self._major = int(w.__version__.split(".")[0])
        self._base = (cfg or Config()).copy()
        infos = {i["key"]: i for i in field_info(self._base)}
        if keys is None:
            keys = DEFAULT_KEYS
        elif keys == "all":
            keys = tuple(infos)
        self.keys = tuple(".".join(self._base.locate(k)) for k in keys)
        self.controls: dict = {}
        groups: dict[str, list] = {}
        for key in self.keys:
            info = infos[key]
            control = self._make_control(w, info)
            self.controls[key] = control
            note = w.HTML(f"<small>{html.escape(info['help'] + _range_text(info))}</small>")
            groups.setdefault(info["group"], []).append(w.HBox([control, note]))
        order = [g for g in _GROUP_ORDER if g in groups] + [g for g in groups if g not in _GROUP_ORDER]
        self.accordion = w.Accordion(children=[w.VBox(groups[g]) for g in order])
        for i, g in enumerate(order):
            self.accordion.set_title(i, _GROUP_TITLES.get(g, g))
        self.accordion.selected_index = 0 if order else None
        self.message = w.HTML("")
        self.widget = w.VBox([self.accordion, self.message])
        self.groups = tuple(order)

    # ---- building ------------------------------------------------------------------------------
    def _make_control(self, w, info: dict):
        value, kind = info["value"], info["type"]
        common = {"description": info["name"], "style": {"description_width": "initial"}}
        if kind == "bool":
            control = w.Checkbox(value=bool(value), indent=False, **common)
        elif info["choices"]:
            control = w.Dropdown(options=[(str(c), c) for c in info["choices"]], value=value, **common)
        elif kind == "int":
            control = w.IntText(value=int(value), **common)
        elif kind == "float":
            control = w.FloatText(value=float(value), **common)
        elif kind == "list":
            control = w.Text(value=_list_text(value), **common)
        else:
            control = w.Text(value=str(value), **common)
        tip = info["help"] + _range_text(info)
        # ipywidgets 8 renamed description_tooltip to tooltip (the old name warns there).
        if self._major >= 8:
            control.tooltip = tip
        else:
            control.description_tooltip = tip
        return control

    # ---- reading and writing -------------------------------------------------------------------
    def values(self) -> dict:
        """``{dotted key: raw widget value}`` as currently entered (not validated)."""
        return {key: c.value for key, c in self.controls.items()}

    @property
    def value(self) -> Config:
        """A new validated Config: the starting config with every control's value applied."""
        cfg = self._base.copy()
        try:
            cfg.override(self.values())
        except ConfigError as exc:
            self.message.value = f'<span style="color:#c00"><b>Invalid setting:</b> {html.escape(str(exc))}</span>'
            raise
        self.message.value = ""
        return cfg

    def set(self, cfg: Config) -> None:
        """Load ``cfg`` into the controls (and as the base for fields without a control)."""
        self._base = cfg.copy()
        for key, control in self.controls.items():
            v = self._base.get(key)
            control.value = _list_text(v) if isinstance(v, list) else v
        self.message.value = ""

    def _ipython_display_(self):  # display(panel) shows the widget
        from IPython.display import display  # noqa: PLC0415

        display(self.widget)


def _list_text(values) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


__all__ = ["ConfigPanel", "DEFAULT_KEYS"]
