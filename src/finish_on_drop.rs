//! A future that is finished on a task of its own if whoever polls it
//! lets go before it is done.
//!
//! A send's commit and what follows it (the hand-over, the dispatcher
//! woken, the accepted count), and an inbound message's (its count, the
//! forwarder rung), must run to the end once the store may have the
//! message, even if the request is dropped because its client went
//! away. Spawning that work for every request costs a task, a wake-up and
//! a hop per accept; the wrapper runs it inline in the request and spawns
//! it only in the rare case the request is dropped half-way.
//!
//! A panic while it runs inline is caught and answered as the spawned
//! task's would have been: the caller gets it as an error, and the
//! connection is not torn down without an answer.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct FinishOnDrop<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// `None` once it is done (or panicked): nothing is left to finish.
    future: Option<Pin<Box<F>>>,
}

/// `future`, finished whether or not it is polled to the end.
pub fn finish_on_drop<F>(future: F) -> FinishOnDrop<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    FinishOnDrop {
        future: Some(Box::pin(future)),
    }
}

impl<F> Future for FinishOnDrop<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// The future's output, or the message of the panic that ended it.
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(future) = self.future.as_mut() else {
            panic!("FinishOnDrop polled after it was done");
        };
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                self.future = None;
                Poll::Ready(Ok(output))
            }
            Err(panic) => {
                self.future = None;
                Poll::Ready(Err(panic_message(&*panic)))
            }
        }
    }
}

impl<F> Drop for FinishOnDrop<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        let Some(future) = self.future.take() else {
            return;
        };
        // Outside a runtime (its shutdown dropping the request) there is
        // nothing to run it on; the store's writer still settles the
        // commit itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(future);
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn a_future_polled_to_the_end_gives_its_output() {
        assert_eq!(finish_on_drop(async { 7 }).await, Ok(7));
    }

    /// The case it exists for: the caller drops it half-way, and what
    /// comes after the await still runs.
    #[tokio::test]
    async fn a_future_dropped_half_way_is_finished_on_a_task() {
        let (go_on, wait) = oneshot::channel::<()>();
        let finished = Arc::new(AtomicBool::new(false));
        let (done, was_done) = oneshot::channel();
        let seen = finished.clone();
        let mut wrapped = Box::pin(finish_on_drop(async move {
            let _ = wait.await;
            seen.store(true, Ordering::SeqCst);
            let _ = done.send(());
        }));
        assert!(wrapped.as_mut().now_or_never().is_none());
        drop(wrapped);
        assert!(!finished.load(Ordering::SeqCst));
        go_on.send(()).unwrap();
        was_done
            .await
            .expect("the dropped future was never finished");
        assert!(finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_panic_is_answered_as_an_error() {
        let ended = finish_on_drop(async { panic!("after the commit") }).await;
        assert_eq!(ended, Err::<(), _>("after the commit".to_string()));
    }
}
