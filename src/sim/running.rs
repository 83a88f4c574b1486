//! A simulator serving on a loopback port in the background: what tests and `demo` use.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::simulator::{SimConfig, Simulator};

/// A simulator serving on `127.0.0.1:<port>`. Stops when [`RunningSim::shutdown`] is
/// awaited or when dropped.
#[derive(Debug)]
pub struct RunningSim {
    /// The simulator behind the server, for in-process control.
    sim: Simulator,
    /// The bound address.
    addr: SocketAddr,
    /// Dropping or sending tells the server to stop.
    stop: Option<oneshot::Sender<()>>,
    /// The serving task.
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Generates a simulator from `config` and serves it on `127.0.0.1:0`.
pub async fn spawn(config: SimConfig) -> std::io::Result<RunningSim> {
    RunningSim::start(Simulator::new(config)).await
}

impl RunningSim {
    /// Serves an existing simulator on `127.0.0.1:0`.
    pub async fn start(sim: Simulator) -> std::io::Result<RunningSim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = sim.clone();
        let task = tokio::spawn(async move {
            server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(RunningSim {
            sim,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:<port>/v1`: the Kombo base URL to configure a client with.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:<port>`: where the `/_sim/` control API lives.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn sim(&self) -> &Simulator {
        &self.sim
    }

    /// Stops the server and waits for it (connections in flight finish first).
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| std::io::Error::other(format!("sim server task failed: {e}")))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Idle keep-alive connections would hold a graceful shutdown open; the task is
        // aborted so a dropped handle never leaves a server behind.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
