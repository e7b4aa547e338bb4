//! A registered API server that answers slowly, a byte at a time, or without end cannot hold a
//! request (or its memory): every call to a cluster is bounded in time and size.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, pki_dir};
use common::{Backend, TestDb, TestServer, settings_for};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Clone, Copy)]
enum Answer {
    /// Headers, then one byte a second of a body that claims 100 MB.
    Drip,
    /// A chunked body that never ends, as fast as the client reads.
    Endless,
}

/// A TLS server on loopback with the control plane's serving certificate (valid for
/// 127.0.0.1), answering every request as `answer` says.
async fn hostile(answer: Answer) -> (u16, tokio::task::JoinHandle<()>) {
    let pem_of = |file: &str| pem::parse_many(std::fs::read(pki_dir().join(file)).unwrap()).unwrap();
    let certs: Vec<CertificateDer<'static>> =
        pem_of("apiserver.crt").into_iter().map(|p| CertificateDer::from(p.contents().to_vec())).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pem_of("apiserver.key")[0].contents().to_vec()));
    let mut config =
        tokio_rustls::rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let mut request = vec![0u8; 16 * 1024];
                if tls.read(&mut request).await.unwrap_or(0) == 0 {
                    return;
                }
                match answer {
                    Answer::Drip => {
                        let head =
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{";
                        if tls.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        loop {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if tls.write_all(b" ").await.is_err() || tls.flush().await.is_err() {
                                return;
                            }
                        }
                    }
                    Answer::Endless => {
                        let head =
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                        if tls.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                        while tls.write_all(chunk.as_bytes()).await.is_ok() {}
                    }
                }
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_endless_answers_are_cut() {
    let cp = ControlPlane::get();
    for answer in [Answer::Drip, Answer::Endless] {
        let (port, server_task) = hostile(answer).await;
        let db = TestDb::new(Backend::Sqlite).await;
        let mut settings = settings_for(&db);
        settings.clients.cluster_request_timeout_secs = 3;
        settings.clients.cluster_max_response_bytes = 1 << 20;
        let server = TestServer::start_with(settings).await;
        let input = json!({ "name": "hostile", "mode": "DIRECT", "apiServerUrl": format!("https://127.0.0.1:{port}"),
                            "caData": cp.ca_pem(), "bearerToken": "t" });
        let id = server
            .gql_ok("mutation($i: CreateClusterInput!) { createCluster(input: $i) { id } }", json!({ "i": input }))
            .await["createCluster"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let started = Instant::now();
        let body = tokio::time::timeout(
            Duration::from_secs(30),
            server.gql(
                "query($id: ID!) { cluster(id: $id) { resource(kind: \"ConfigMap\", namespace: \"a\", name: \"b\") { kind } } }",
                json!({ "id": id }),
            ),
        )
        .await
        .expect("the server answers: the hostile API server does not hold the request");
        assert!(body.get("errors").is_some(), "{body}");
        assert!(started.elapsed() < Duration::from_secs(20), "answered in {:?}", started.elapsed());
        server_task.abort();
    }
}
