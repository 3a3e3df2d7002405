//! A stream's timestamps as its players see them. The first publisher's timestamps pass
//! through unchanged; a later one (republish, takeover, a relay pull changing source) is
//! rebased to continue 1 ms after the last frame players saw, so players that stayed connected
//! across the change see one continuous timeline.

#[derive(Default)]
pub(super) struct Timeline {
    /// Added to incoming timestamps (wrapping); recomputed at each new publisher's first message.
    offset: u32,
    rebase_pending: bool,
    last_out: Option<u32>,
}

impl Timeline {
    /// A new publisher takes over: its first message decides the offset.
    pub(super) fn new_publisher(&mut self) {
        self.rebase_pending = self.last_out.is_some();
    }

    /// The players' timestamp for a publisher's `ts`.
    pub(super) fn map(&mut self, ts: u32) -> u32 {
        if self.rebase_pending {
            self.offset = self.last_out.unwrap_or(0).wrapping_add(1).wrapping_sub(ts);
            self.rebase_pending = false;
        }
        let out = ts.wrapping_add(self.offset);
        self.last_out = Some(out);
        out
    }
}
