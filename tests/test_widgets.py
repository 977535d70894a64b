"""ConfigPanel, headless: controls generated from the config metadata, values round-trip, bad input errors."""
import pytest

ipywidgets = pytest.importorskip("ipywidgets")

from ganlib.config import Config, ConfigError, field_info, preset  # noqa: E402
from ganlib.widgets import DEFAULT_KEYS, ConfigPanel  # noqa: E402


def _other_value(info):
    """A valid value different from the field's current one."""
    v = info["value"]
    if info["type"] == "bool":
        return not v
    if info["choices"]:
        return next(c for c in info["choices"] if c != v)
    if info["type"] == "int":
        step = 2  # even: batch_size must stay even
        return v + step if info["max"] is None or v + step <= info["max"] else v - step
    if info["type"] == "float":
        step = 0.25 if info["max"] is None or info["max"] >= 1 else info["max"] / 4
        return v + step if info["max"] is None or v + step <= info["max"] else v - step
    if info["type"] == "list":
        return [0.5, 0.25, 0.125, 1.0]
    return v + "_changed" if v else "some/folder"


def test_default_panel_has_the_issue_keys_with_matching_widget_types():
    panel = ConfigPanel()
    assert panel.keys == DEFAULT_KEYS
    c = panel.controls
    assert isinstance(c["loss.use_PL"], ipywidgets.Checkbox)
    assert isinstance(c["loss.gan_training"], ipywidgets.Dropdown)
    assert isinstance(c["model.resolution"], ipywidgets.Dropdown)
    assert [value for _, value in c["model.resolution"].options] == [32, 64, 128, 256]
    assert isinstance(c["train.schedule"], ipywidgets.Dropdown)
    assert isinstance(c["train.batch_size"], ipywidgets.IntText)
    assert isinstance(c["loss.m_mask"], ipywidgets.FloatText)
    # grouped: flags first, then model, then train
    assert panel.groups == ("flags", "model", "train")
    assert panel.accordion.get_title(0).startswith("Loss flags")
    assert panel.value.to_dict() == Config().to_dict()


def test_help_text_is_shown_and_used_as_tooltip():
    panel = ConfigPanel(keys=["m_mask"])
    control = panel.controls["loss.m_mask"]
    tip = getattr(control, "tooltip", None) or getattr(control, "description_tooltip", None)
    assert "Hinge margin" in tip and "[0 … 1]" in tip
    row = panel.accordion.children[0].children[0]
    assert "Hinge margin" in row.children[1].value


@pytest.mark.parametrize("info", field_info(), ids=lambda i: i["key"])
def test_every_field_round_trips(info):
    panel = ConfigPanel(keys="all")
    new = _other_value(info)
    control = panel.controls[info["key"]]
    control.value = ", ".join(str(x) for x in new) if isinstance(new, list) else new
    cfg = panel.value
    assert cfg.get(info["key"]) == new
    # only that field changed
    expected = Config().override({info["key"]: new}).to_dict()
    assert cfg.to_dict() == expected


@pytest.mark.parametrize("name", ["v22_train", "v22_colab", "cpu_demo", "smoke"])
def test_config_to_panel_to_config_is_identity(name):
    cfg = preset(name)
    assert ConfigPanel(cfg, keys="all").value.to_dict() == cfg.to_dict()
    # default keys: fields without a control keep the starting config's values (smoke's width 0.125)
    assert ConfigPanel(cfg).value.to_dict() == cfg.to_dict()
    panel = ConfigPanel(keys="all")
    panel.set(cfg)
    assert panel.value.to_dict() == cfg.to_dict()


def test_set_then_edit_keeps_base_fields():
    panel = ConfigPanel()
    panel.set(preset("smoke"))
    panel.controls["loss.use_cyclic_loss"].value = True
    cfg = panel.value
    assert cfg.loss.use_cyclic_loss is True
    assert cfg.model.width == preset("smoke").model.width  # not in the panel, from the set() config


@pytest.mark.parametrize("key, bad, words", [
    ("loss.m_mask", 2.0, "m_mask"),
    ("loss.lr_factor", 0.0, "lr_factor"),
    ("train.batch_size", 3, "even"),
    ("train.display_iters", 0, "display_iters"),
])
def test_invalid_values_error_and_show_in_panel(key, bad, words):
    panel = ConfigPanel()
    panel.controls[key].value = bad
    with pytest.raises(ConfigError, match=words):
        panel.value
    assert words in panel.message.value and "Invalid" in panel.message.value
    # fixing the entry clears the message
    panel.controls[key].value = Config().get(key)
    assert panel.value.get(key) == Config().get(key)
    assert panel.message.value == ""


def test_cross_field_error_resolution_above_work_size():
    panel = ConfigPanel(preset("smoke"))  # work_size 64
    panel.controls["model.resolution"].value = 128
    with pytest.raises(ConfigError, match="work_size"):
        panel.value


def test_bad_list_text_errors():
    panel = ConfigPanel(keys=["w_pl"])
    panel.controls["loss.w_pl"].value = "a, b"
    with pytest.raises(ConfigError, match="w_pl"):
        panel.value
    panel.controls["loss.w_pl"].value = "1, 2, 3"  # 3 weights, 4 needed
    with pytest.raises(ConfigError, match="4 weights"):
        panel.value


def test_unknown_key_is_refused():
    with pytest.raises(ConfigError, match="unknown config key"):
        ConfigPanel(keys=["no_such_flag"])
