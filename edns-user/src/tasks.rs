//! The background tasks of one config (probes, scrapes, schedules, ...):
//! a reload aborts the old config's set when it starts the new one's.

use std::future::Future;
use std::sync::Mutex;

use tokio::task::AbortHandle;

#[derive(Default)]
pub struct Tasks(Mutex<Vec<AbortHandle>>);

impl Tasks {
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, f: F) {
        let h = tokio::spawn(f);
        self.0.lock().unwrap().push(h.abort_handle());
    }

    /// Aborts every task; each stops at its next await.
    pub fn abort_all(&self) {
        for h in self.0.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}
