"""The status line: sync state, events pending, last contact; always visible."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual.widgets import Static

if TYPE_CHECKING:
    from tui_client.tui.app import ViddaApp


class StatusLine(Static):
    def render_status(self, app: ViddaApp) -> None:
        t = app.t
        st = app.sync_status
        if st is None:
            self.update(t("sync_line", state=t("no_server"), pending=app.pending, last="–"))
            return
        last = (
            time.strftime("%H:%M:%S", time.localtime(st.last_synced_ms / 1000))
            if st.last_synced_ms
            else t("never")
        )
        line = t("sync_line", state=t(st.state), pending=st.pending, last=last)
        if st.error:
            line += f" · {st.error}"
        self.update(line)
