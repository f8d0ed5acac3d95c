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
    /// The names of the tasks still running, for a stop that gives up on
    /// them ([`Tasks::running`]).
    names: std::collections::HashMap<tokio::task::Id, String>,
}

impl Tasks {
    /// Run `task` under `name`; a panic is caught and reported as its end.
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let name = name.into();
        let running = name.clone();
        let handle = self.set.spawn(async move {
            let panic = AssertUnwindSafe(task)
                .catch_unwind()
                .await
                .err()
                .map(|payload| panic_message(payload.as_ref()));
            TaskEnd { name, panic }
        });
        self.names.insert(handle.id(), running);
    }

    /// The names of the tasks that have not ended, sorted.
    pub fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self.names.values().cloned().collect();
        names.sort();
        names
    }

    /// The next task to end; `None` once none is left.
    pub async fn next_end(&mut self) -> Option<TaskEnd> {
        loop {
            match self.set.join_next_with_id().await? {
                Ok((id, end)) => {
                    self.names.remove(&id);
                    return Some(end);
                }
                // Cancelled (the set dropped it): not one of ours to report.
                Err(e) => {
                    self.names.remove(&e.id());
                    continue;
                }
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
        assert!(tasks.running().is_empty());
    }

    #[tokio::test]
    async fn the_tasks_still_running_are_named() {
        let mut tasks = Tasks::default();
        tasks.spawn("the sms/m1 channel", std::future::pending());
        tasks.spawn("the API", async {});
        assert_eq!(tasks.next_end().await.unwrap().to_string(), "the API ended");
        assert_eq!(tasks.running(), ["the sms/m1 channel"]);
    }
}
