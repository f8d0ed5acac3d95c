//! The daemon's long-running tasks, each with a name, so that one that
//! ends while the daemon runs (a panic, a loop that returned) is noticed:
//! a dispatcher that died would otherwise leave its queue unsent behind a
//! `/ready` that still says ready, until someone looked.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use tokio::task::JoinSet;

/// How a task ended: its name, and the panic's message if it panicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnd {
    pub name: String,
    pub panic: Option<String>,
}

impl std::fmt::Display for TaskEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.panic {
            Some(message) => write!(f, "{} panicked: {message}", self.name),
            None => write!(f, "{} ended", self.name),
        }
    }
}

#[derive(Default)]
pub struct Tasks {
    set: JoinSet<TaskEnd>,
}

impl Tasks {
    /// Run `task` under `name`; a panic is caught and reported as its end.
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let name = name.into();
        self.set.spawn(async move {
            let panic = AssertUnwindSafe(task)
                .catch_unwind()
                .await
                .err()
                .map(|payload| panic_message(payload.as_ref()));
            TaskEnd { name, panic }
        });
    }

    /// The next task to end; `None` once none is left.
    pub async fn next_end(&mut self) -> Option<TaskEnd> {
        loop {
            match self.set.join_next().await? {
                Ok(end) => return Some(end),
                // Cancelled (the set dropped it): not one of ours to report.
                Err(_) => continue,
            }
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_reported_with_the_task_s_name_and_message() {
        let mut tasks = Tasks::default();
        tasks.spawn("dispatcher sms/m1", async { panic!("quota out of range") });
        let end = tasks.next_end().await.unwrap();
        assert_eq!(
            end.to_string(),
            "dispatcher sms/m1 panicked: quota out of range"
        );
        tasks.spawn("retention", async {});
        assert_eq!(
            tasks.next_end().await.unwrap().to_string(),
            "retention ended"
        );
        assert_eq!(tasks.next_end().await, None);
    }
}
