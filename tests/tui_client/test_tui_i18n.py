"""Every UI string exists in both languages."""

from tui_client.tui.i18n import STRINGS, Translator


def test_both_languages_have_the_same_keys_and_no_empty_strings() -> None:
    assert set(STRINGS["nb"]) == set(STRINGS["en"])
    assert all(v.strip() for lang in STRINGS.values() for v in lang.values())


def test_toggle_and_format() -> None:
    t = Translator()
    assert t("plans") == "Planer"
    assert t.toggle() == "en" and t("plans") == "Plans"
    assert t("saved", event="ab12") == "Saved as event ab12"
