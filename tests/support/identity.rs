//! A stand-in for the App Service managed identity endpoint (`IDENTITY_ENDPOINT` +
//! `IDENTITY_HEADER`), as the Functions host provides it: real HTTP on loopback, answering
//! by the user-assigned identity asked for, and recording every request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};

/// The header secret the endpoint requires (`IDENTITY_HEADER`).
pub const HEADER_SECRET: &str = "identity-header-secret";
/// `expires_on` of every token it gives (2100-01-01, seconds since the epoch).
pub const EXPIRES_ON: i64 = 4_102_444_800;

/// How the endpoint answers for one identity (`client_id` or `object_id`).
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with this access token.
    Token(&'static str),
    /// This status, with a body as Azure sends it.
    Status(u16),
}

/// One token request, as the endpoint saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub query: HashMap<String, String>,
    /// `X-IDENTITY-HEADER`, if sent.
    pub header: Option<String>,
}

impl Seen {
    /// The identity asked for: `client_id` or `object_id`.
    pub fn id(&self) -> Option<&str> {
        self.query
            .get("client_id")
            .or_else(|| self.query.get("object_id"))
            .map(String::as_str)
    }
}

pub struct IdentityEndpoint {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl IdentityEndpoint {
    /// Starts the endpoint on the current runtime; `answers` by identity id, 400 ("identity
    /// not assigned", as Azure answers) for any other or for a wrong header secret.
    pub async fn start(answers: HashMap<String, Answer>) -> IdentityEndpoint {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let app = axum::Router::new().route(
            "/msi/token",
            axum::routing::get(move |headers: HeaderMap, uri: Uri| {
                let record = Arc::clone(&record);
                let answers = answers.clone();
                async move {
                    let url = format!("http://identity/?{}", uri.query().unwrap_or_default());
                    let query: HashMap<String, String> = reqwest::Url::parse(&url)
                        .expect("a URL")
                        .query_pairs()
                        .into_owned()
                        .collect();
                    let header = headers
                        .get("x-identity-header")
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    let seen = Seen { query, header };
                    let answer = match seen.header.as_deref() {
                        Some(HEADER_SECRET) => seen.id().and_then(|id| answers.get(id)).cloned(),
                        _ => None,
                    };
                    let resource = seen.query.get("resource").cloned().unwrap_or_default();
                    record.lock().expect("lock").push(seen);
                    match answer.unwrap_or(Answer::Status(400)) {
                        Answer::Token(token) => (
                            StatusCode::OK,
                            serde_json::json!({
                                "access_token": token,
                                "expires_on": EXPIRES_ON.to_string(),
                                "resource": resource,
                                "token_type": "Bearer",
                                "client_id": "not-read",
                            })
                            .to_string(),
                        ),
                        Answer::Status(status) => (
                            StatusCode::from_u16(status).expect("status"),
                            match status {
                                400 => r#"{"statusCode":400,"message":"No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId."}"#.to_owned(),
                                _ => format!(r#"{{"statusCode":{status},"message":"An unexpected error occurred."}}"#),
                            },
                        ),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        IdentityEndpoint { addr, seen }
    }

    /// As [`IdentityEndpoint::start`], on a thread and runtime of its own, so it outlives
    /// each test's runtime and answers while a test blocks waiting for a process.
    pub fn start_in_thread(answers: HashMap<String, Answer>) -> IdentityEndpoint {
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let _ = send.send(IdentityEndpoint::start(answers).await);
                std::future::pending::<()>().await
            });
        });
        receive.recv().expect("the identity endpoint starts")
    }

    /// `IDENTITY_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}/msi/token", self.addr)
    }

    /// The requests for identity `id` so far.
    pub fn seen_for(&self, id: &str) -> Vec<Seen> {
        let seen = self.seen.lock().expect("lock");
        seen.iter()
            .filter(|s| s.id() == Some(id))
            .cloned()
            .collect()
    }
}
