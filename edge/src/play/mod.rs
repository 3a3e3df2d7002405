//! Playing: [`admission`] takes a `play(name)` from look-up to an accepted player (waiting for
//! the stream, `maxViewers`, attaching a relay pull for a stream published elsewhere), and
//! [`player`] is the loop every player runs until it ends, viewers and other edges' relay
//! pulls alike.

pub(crate) mod admission;
pub(crate) mod player;

pub(crate) use admission::{Request, run};
