//! The abstraction the stages are written against: a [`Source`] of items that are acknowledged
//! once dealt with, and a [`Sink`] that values are put into and that is closed after the last.
//! `local` implements it on tokio channels, `remote` on circuit channels.

use std::future::Future;
use std::ops::Deref;

/// An item taken from a [`Source`]; dereferences to its value.
pub trait Ack {
    /// Says the item has been dealt with. Until then a source may give it to someone else if
    /// this process dies — so ack only once the item's result is safely passed on.
    fn ack(self);
}

/// Where a stage takes its input from.
pub trait Source<T>: Send {
    /// One item, to be acknowledged after use.
    type Item: Deref<Target = T> + Ack + Send;

    /// The next item; `None` once the source is closed and drained.
    fn next(&mut self) -> impl Future<Output = anyhow::Result<Option<Self::Item>>> + Send;
}

/// Where a stage puts its output.
pub trait Sink<T>: Send + Sync {
    /// Puts a value, waiting while the sink is full; done once the sink has it.
    fn put(&self, value: T) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Closes the sink: its readers see the end once they have drained it.
    fn close(self) -> impl Future<Output = anyhow::Result<()>> + Send;
}
