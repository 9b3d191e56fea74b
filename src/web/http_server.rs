//! The HTTP/1.1 server loop: accepts connections up to a cap, gives every connection a deadline
//! to send each request's headers (idle keep-alive connections included: a silent or dripping
//! client is closed), and on shutdown stops accepting, lets requests in flight finish within a
//! grace period, then closes whatever is left.
//!
//! Websockets leave this loop once upgraded; their sessions have their own pings, timeouts and
//! shutdown (see `lib.rs`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Bounds on what HTTP clients may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    /// A connection must send a request's complete headers within this time after it opens or
    /// after its previous response (then it is closed).
    pub header_read_timeout: Duration,
    /// Most connections open at once (websockets included); further clients wait in the
    /// listen backlog.
    pub max_connections: usize,
    /// After the stop signal, how long requests in flight may still take.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then drains as [`HttpLimits`] says.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: tower::Service<
            axum::http::Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let graceful = CancellationToken::new();
    let force = CancellationToken::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            },
        ));
        let conn = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let (graceful, force) = (graceful.clone(), force.clone());
        connections.spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = graceful.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        result = conn.as_mut() => result,
                        () = force.cancelled() => Ok(()),
                    }
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, %err, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    graceful.cancel();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::info!(
            open = connections.len(),
            "closing HTTP connections still open after the shutdown grace period"
        );
        force.cancel();
        connections.wait().await;
    }
    Ok(())
}
