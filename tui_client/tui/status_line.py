"""The status line: sync state, events pending, last contact; always visible.

Every screen ends with `status_bar()`: the status line above the key
footer, both in one container docked at the bottom. (Two widgets docked at
the same edge overlap in Textual: docked on its own, the status line sat
under the footer and was never seen.)"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from tui_client.tui.key_footer import KeyFooter

if TYPE_CHECKING:
    from tui_client.tui.app import ViddaApp


class StatusLine(Static):
    _shown: str | None = None

    def show(self, line: str) -> None:
        """One line of fixed height (CSS): no layout of the screen, and
        nothing at all if the text is the same."""
        if line != self._shown:
            self._shown = line
            self.update(line, layout=False)

    def render_status(self, app: ViddaApp) -> None:
        t = app.t
        st = app.sync_status
        if st is None:
            self.show(t("sync_line", state=t("no_server"), pending=app.pending, last="–"))
            return
        last = (
            time.strftime("%H:%M:%S", time.localtime(st.last_synced_ms / 1000))
            if st.last_synced_ms
            else t("never")
        )
        line = t("sync_line", state=t(st.state), pending=st.pending, last=last)
        if st.error:
            line += f" · {st.error}"
        self.show(line)


def status_bar(*above: Widget) -> Vertical:
    """The status line and the footer, stacked at the bottom of a screen
    (with `above` them, if given: the line that edits a field in place)."""
    return Vertical(*above, StatusLine(id="status"), KeyFooter(), id="status-bar")
