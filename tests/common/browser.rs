//! A real browser for the page tests: Debian's Chromium, headless, driven over the DevTools
//! protocol (JSON messages over a WebSocket, a few commands only). Every request the page makes is
//! recorded, so that a test can prove that nothing left the machine. Screenshots go to
//! `<cargo target dir>/tmp/screenshots/`.
//!
//! The browser is found as `$KUBEGQL_TEST_CHROMIUM`, else `chromium` on the PATH; `scripts/test`
//! installs Debian's `chromium` when it is missing. A missing browser fails the test.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One DevTools event: the page session it came from (none for the browser), its method, its
/// parameters.
#[derive(Clone, Debug)]
pub struct Event {
    pub session: Option<String>,
    pub method: String,
    pub params: Value,
}

struct Connection {
    sink: Mutex<SplitSink<Socket, Message>>,
    next_id: AtomicU64,
    pending: std::sync::Mutex<HashMap<u64, oneshot::Sender<Result<Value, Value>>>>,
    events: std::sync::Mutex<Vec<Event>>,
}

impl Connection {
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.sink.lock().await.send(Message::text(message.to_string())).await.expect("send to the browser");
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => panic!("the browser closed its DevTools connection during {method}"),
            Err(_) => panic!("the browser did not answer {method} within 60 s"),
        }
    }
}

/// A headless Chromium with its own empty profile, ended (with every process it started) when
/// dropped.
pub struct Browser {
    pid: i32,
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    connection: Arc<Connection>,
}

impl Browser {
    pub async fn start() -> Browser {
        let program = std::env::var("KUBEGQL_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().expect("profile dir");
        let mut command = tokio::process::Command::new(&program);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--window-size=1400,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start the browser `{program}` ({e}): install Debian's chromium (scripts/test does) or set KUBEGQL_TEST_CHROMIUM")
        });
        let pid = child.id().expect("browser pid") as i32;

        // Chromium says where its DevTools endpoint is on stderr (what it said before is kept for
        // the failure message); the rest is read to the end so that the browser never blocks on it.
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = Vec::new();
        let endpoint = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                said.push(line.clone());
                if let Some(at) = line.find("ws://") {
                    return Some(line[at..].trim().to_owned());
                }
            }
            None
        })
        .await;
        let endpoint = match endpoint {
            Ok(Some(endpoint)) => endpoint,
            _ => panic!("the browser gave no DevTools endpoint; it said: {said:?}"),
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (socket, _) = tokio_tungstenite::connect_async(&endpoint).await.expect("DevTools connection");
        let (sink, mut stream) = socket.split();
        let connection = Arc::new(Connection {
            sink: Mutex::new(sink),
            next_id: AtomicU64::new(1),
            pending: std::sync::Mutex::new(HashMap::new()),
            events: std::sync::Mutex::new(Vec::new()),
        });
        let reader = Arc::downgrade(&connection);
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else { continue };
                let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
                let Some(connection) = reader.upgrade() else { break };
                if let Some(id) = message["id"].as_u64() {
                    let answer = match message.get("error") {
                        Some(error) => Err(error.clone()),
                        None => Ok(message["result"].clone()),
                    };
                    if let Some(waiter) = connection.pending.lock().unwrap().remove(&id) {
                        let _ = waiter.send(answer);
                    }
                } else if let Some(method) = message["method"].as_str() {
                    connection.events.lock().unwrap().push(Event {
                        session: message["sessionId"].as_str().map(str::to_owned),
                        method: method.to_owned(),
                        params: message["params"].clone(),
                    });
                }
            }
        });
        Browser { pid, _child: child, _profile: profile, connection }
    }

    /// A new tab, with its network, console and errors recorded from the start.
    pub async fn page(&self) -> Page {
        let target =
            self.connection.call(None, "Target.createTarget", json!({ "url": "about:blank" })).await.expect("new tab");
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = self
            .connection
            .call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true }))
            .await
            .expect("attach to the tab");
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        let page = Page { connection: self.connection.clone(), session };
        for domain in ["Page.enable", "Runtime.enable", "Network.enable"] {
            page.call(domain, json!({})).await;
        }
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The browser's renderers and helpers are in its process group.
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{}", self.pid)]).status();
    }
}

/// One tab.
pub struct Page {
    connection: Arc<Connection>,
    session: String,
}

impl Page {
    pub async fn call(&self, method: &str, params: Value) -> Value {
        match self.connection.call(Some(&self.session), method, params).await {
            Ok(result) => result,
            Err(error) => panic!("{method} failed: {error}"),
        }
    }

    /// Opens `url` and waits until the document and everything it loads has arrived.
    pub async fn open(&self, url: &str) {
        let answer = self.call("Page.navigate", json!({ "url": url })).await;
        assert!(answer.get("errorText").is_none(), "navigating to {url}: {answer}");
        self.wait_for(&format!("opening {url}"), "document.readyState === 'complete'", Duration::from_secs(30)).await;
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value. A thrown
    /// exception fails the test with its message.
    pub async fn eval(&self, expression: &str) -> Value {
        let answer = self
            .call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }))
            .await;
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("`{expression}` threw: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Polls `condition` (a JavaScript expression) until it is truthy; fails with what the page
    /// showed and said when `within` passes first.
    pub async fn wait_for(&self, what: &str, condition: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let value = self.eval(condition).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return;
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body ? document.body.innerText : ''").await;
                panic!(
                    "{what}: `{condition}` still false after {within:?}.\npage text: {text}\nconsole: {:#?}",
                    self.console()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The visible text of the first element matching `selector` ("" when there is none).
    pub async fn text(&self, selector: &str) -> String {
        let expression = format!("(document.querySelector({}) || {{innerText: ''}}).innerText", json!(selector));
        self.eval(&expression).await.as_str().unwrap_or_default().to_owned()
    }

    /// Clicks the middle of the first element matching `selector`, as a mouse would.
    pub async fn click(&self, selector: &str) {
        let expression = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return null; e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            json!(selector)
        );
        let at = self.eval(&expression).await;
        let (x, y) = match at.as_array() {
            Some(xy) => (xy[0].as_f64().unwrap(), xy[1].as_f64().unwrap()),
            None => panic!("nothing to click at {selector}"),
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .await;
        }
    }

    /// Focuses the first element matching `selector` and types `text` into it.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let focused = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return false; e.focus(); return true; }})()",
                json!(selector)
            ))
            .await;
        assert_eq!(focused, json!(true), "nothing to type into at {selector}");
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    /// Chooses `value` in the `<select>` matching `selector`, as a user would (a change event).
    pub async fn select(&self, selector: &str, value: &str) {
        let chosen = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return 'no element'; \
                 if (![...e.options].some(o => o.value === {v})) return 'no option ' + {v} + ' in ' + [...e.options].map(o => o.value); \
                 e.value = {v}; e.dispatchEvent(new Event('change', {{bubbles: true}})); return 'ok'; }})()",
                json!(selector),
                v = json!(value)
            ))
            .await;
        assert_eq!(chosen, json!("ok"), "choosing {value} at {selector}");
    }

    /// Saves a PNG of the viewport under `<target>/tmp/screenshots/NAME.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" })).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    fn events(&self) -> Vec<Event> {
        let events = self.connection.events.lock().unwrap();
        events.iter().filter(|e| e.session.as_deref() == Some(&self.session)).cloned().collect()
    }

    /// Every URL the page asked for (documents, scripts, styles, fetches, WebSockets), in order.
    pub fn requested_urls(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e.method.as_str() {
                "Network.requestWillBeSent" => e.params["request"]["url"].as_str().map(str::to_owned),
                "Network.webSocketCreated" => e.params["url"].as_str().map(str::to_owned),
                _ => None,
            })
            .collect()
    }

    /// Requests that failed, with the browser's reason (a refused CORS request, a blocked load).
    pub fn failed_requests(&self) -> Vec<(String, Value)> {
        let events = self.events();
        let url_of = |id: &Value| {
            events
                .iter()
                .find(|e| e.method == "Network.requestWillBeSent" && &e.params["requestId"] == id)
                .and_then(|e| e.params["request"]["url"].as_str())
                .unwrap_or("?")
                .to_owned()
        };
        events
            .iter()
            .filter(|e| e.method == "Network.loadingFailed")
            .map(|e| (url_of(&e.params["requestId"]), e.params.clone()))
            .collect()
    }

    /// What the page wrote to its console, and the exceptions it did not catch.
    pub fn console(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e.method.as_str() {
                "Runtime.consoleAPICalled" => Some(format!(
                    "{}: {}",
                    e.params["type"].as_str().unwrap_or(""),
                    e.params["args"]
                        .as_array()
                        .map(|args| args
                            .iter()
                            .map(|a| a["value"].as_str().map(str::to_owned).unwrap_or_else(|| a.to_string()))
                            .collect::<Vec<_>>()
                            .join(" "))
                        .unwrap_or_default()
                )),
                "Runtime.exceptionThrown" => Some(format!("exception: {}", e.params["exceptionDetails"])),
                _ => None,
            })
            .collect()
    }

    /// Exceptions the page did not catch.
    pub fn exceptions(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e.method == "Runtime.exceptionThrown")
            .map(|e| e.params["exceptionDetails"].clone())
            .collect()
    }
}

/// Where screenshots go: `<cargo target dir>/tmp/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}
