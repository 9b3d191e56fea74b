//! The edge: everything that speaks HTTP. The router (every route with its OpenAPI description,
//! assembled in one place), the HTTP server loop, the access rules applied to requests, the map's
//! assets, the websocket upgrades, and the query API.

pub(crate) mod access;
pub(crate) mod api;
pub(crate) mod assets;
pub(crate) mod auth;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod http_server;
pub(crate) mod routes;
pub(crate) mod sockets;

pub(crate) use routes::router;
