//! The send paths' shared pieces: why a message is refused, the future returned by `send`/`feed`,
//! and waiting for room.

use crate::error::SendError;
use crate::Frames;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::Notify;

/// Offer `frames` with `attempt` until it is not refused as `Full`, waiting for `room` to be
/// notified in between. The waiter is registered before each attempt, so room made between a
/// refused attempt and the wait is not missed.
pub(super) async fn until_room(
    room: &Notify,
    mut frames: Frames,
    mut attempt: impl FnMut(Frames) -> Result<(), SendError>,
) -> Result<(), SendError> {
    loop {
        let notified = room.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match attempt(frames) {
            Err(SendError::Full(f)) => {
                frames = f;
                notified.await;
            }
            other => return other,
        }
    }
}

/// Why a message could not be queued or a writer could not reserve room.
pub(super) enum Refused {
    Full,
    Closed,
}

impl Refused {
    /// The user-facing error, with the refused message handed back.
    pub(super) fn hand_back(self, frames: Frames) -> SendError {
        match self {
            Refused::Full => SendError::Full(frames),
            Refused::Closed => SendError::Closed(frames),
        }
    }
}

/// The future returned by [`Outbox::send`]: already queued, refused for good, or waiting for room.
/// The rare cases are boxed so the common one is a one-word value with nothing to move.
pub(super) enum SendFuture<'a> {
    Queued,
    Failed(Option<Box<SendError>>),
    Wait(Pin<Box<dyn std::future::Future<Output = Result<(), SendError>> + Send + 'a>>),
}

impl std::future::Future for SendFuture<'_> {
    type Output = Result<(), SendError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            SendFuture::Queued => Poll::Ready(Ok(())),
            SendFuture::Failed(e) => {
                let e = e
                    .take()
                    .expect("Outbox::send future polled after completion");
                Poll::Ready(Err(*e))
            }
            SendFuture::Wait(f) => f.as_mut().poll(cx),
        }
    }
}
