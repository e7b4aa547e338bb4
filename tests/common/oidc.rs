//! The OpenID providers of the single sign-on tests: two Ory Hydra servers that the test command
//! starts (`tests/cluster/oidc up`), used through their public and admin APIs as a login
//! application and a relying party would use them.

use serde_json::{Value, json};

/// One Hydra server.
#[derive(Clone, Debug)]
pub struct Provider {
    pub issuer: String,
    pub admin: String,
}

impl Provider {
    /// `A` (the issuer kubegql trusts in the tests) or `B` (another issuer).
    pub fn get(which: &str) -> Provider {
        let var = |part: &str| {
            let name = format!("KUBEGQL_TEST_OIDC_{which}_{part}");
            std::env::var(&name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: run the suite with scripts/test, which starts the OpenID providers \
                     (tests/cluster/oidc up)"
                )
            })
        };
        Provider { issuer: var("ISSUER"), admin: var("ADMIN") }
    }

    /// Registers a confidential client allowed the code and refresh grants; returns its secret.
    pub async fn register_client(&self, client_id: &str, redirect_uris: &[&str]) -> String {
        let secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
        let body = json!({
            "client_id": client_id,
            "client_secret": secret,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": "openid offline_access email profile",
            "redirect_uris": redirect_uris,
            "post_logout_redirect_uris": redirect_uris.iter().map(|u| u.replace("/auth/callback", "/ui")).collect::<Vec<_>>(),
            "token_endpoint_auth_method": "client_secret_basic",
        });
        let response = reqwest::Client::new()
            .post(format!("{}/admin/clients", self.admin))
            .json(&body)
            .send()
            .await
            .expect("hydra admin");
        assert_eq!(response.status(), 201, "client registered: {}", response.text().await.unwrap_or_default());
        secret
    }

    /// Sets how long the client's ID and access tokens live (Go durations such as "4s").
    pub async fn set_token_lifespan(&self, client_id: &str, lifespan: &str) {
        let body = json!({
            "authorization_code_grant_id_token_lifespan": lifespan,
            "authorization_code_grant_access_token_lifespan": lifespan,
            "refresh_token_grant_id_token_lifespan": lifespan,
            "refresh_token_grant_access_token_lifespan": lifespan,
        });
        let response = reqwest::Client::new()
            .put(format!("{}/admin/clients/{client_id}/lifespans", self.admin))
            .json(&body)
            .send()
            .await
            .expect("hydra admin");
        assert!(response.status().is_success(), "lifespans set: {}", response.text().await.unwrap_or_default());
    }

    /// Adds a new signing key for ID tokens; Hydra signs with it from now on and keeps serving the
    /// old ones in its key set. Returns the new key id.
    pub async fn rotate_signing_key(&self) -> String {
        let kid = format!("rotated-{}", uuid::Uuid::new_v4().simple());
        let response = reqwest::Client::new()
            .post(format!("{}/admin/keys/hydra.openid.id-token", self.admin))
            .json(&json!({ "alg": "RS256", "use": "sig", "kid": kid }))
            .send()
            .await
            .expect("hydra admin");
        assert!(response.status().is_success(), "key created: {}", response.text().await.unwrap_or_default());
        kid
    }

    /// A call to Hydra's admin API (the login and consent screens' side), answered with JSON.
    async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        challenge: (&str, &str),
        body: Option<Value>,
    ) -> Value {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.admin)).query(&[challenge]);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    /// Accepts a login as `subject` (what a login screen does); returns where the browser goes on.
    pub async fn accept_login(&self, challenge: &str, subject: &str) -> String {
        let path = "/admin/oauth2/auth/requests/login/accept";
        let body = json!({ "subject": subject });
        let accepted = self.admin_call(reqwest::Method::PUT, path, ("login_challenge", challenge), Some(body)).await;
        accepted["redirect_to"].as_str().unwrap_or_else(|| panic!("login accepted: {accepted}")).to_owned()
    }

    /// Grants what the client asked for, with these ID token claims (what a consent screen does);
    /// returns where the browser goes on.
    pub async fn accept_consent(&self, challenge: &str, claims: Value) -> String {
        let asked = ("consent_challenge", challenge);
        let request = self.admin_call(reqwest::Method::GET, "/admin/oauth2/auth/requests/consent", asked, None).await;
        let body = json!({
            "grant_scope": request["requested_scope"],
            "grant_access_token_audience": request["requested_access_token_audience"],
            "session": { "id_token": claims },
        });
        let path = "/admin/oauth2/auth/requests/consent/accept";
        let accepted = self.admin_call(reqwest::Method::PUT, path, asked, Some(body)).await;
        accepted["redirect_to"].as_str().unwrap_or_else(|| panic!("consent accepted: {accepted}")).to_owned()
    }

    /// Takes a browser (a client with a cookie store that does not follow redirects) from an
    /// authorization URL through Hydra's login and consent, as a login application that signs
    /// `subject` in with these ID token claims; returns where Hydra finally sends the browser
    /// (the client's redirect URI, with the code and state).
    pub async fn sign_in(
        &self,
        browser: &reqwest::Client,
        authorize_url: &str,
        subject: &str,
        claims: Value,
    ) -> String {
        let location = |response: reqwest::Response| {
            assert!(response.status().is_redirection(), "a redirect, not {}", response.status());
            response.headers()["location"].to_str().unwrap().to_owned()
        };
        let to_login = location(browser.get(authorize_url).send().await.unwrap());
        let next = self.accept_login(&challenge_of(&to_login, "login_challenge"), subject).await;
        let to_consent = location(browser.get(next).send().await.unwrap());
        let next = self.accept_consent(&challenge_of(&to_consent, "consent_challenge"), claims).await;
        location(browser.get(next).send().await.unwrap())
    }

    /// An ID token for `client_id`, as a relying party of its own gets one: the code flow with a
    /// redirect URI that is never visited (the code is read off Hydra's redirect).
    pub async fn id_token(&self, client_id: &str, secret: &str, subject: &str, claims: Value) -> String {
        let browser = browser();
        let mut authorize = reqwest::Url::parse(&format!("{}/oauth2/auth", self.issuer)).unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid offline_access email")
            .append_pair("redirect_uri", RELYING_PARTY_REDIRECT)
            .append_pair("state", &uuid::Uuid::new_v4().simple().to_string())
            .append_pair("nonce", &uuid::Uuid::new_v4().simple().to_string());
        let back = self.sign_in(&browser, authorize.as_str(), subject, claims).await;
        let back = reqwest::Url::parse(&back).unwrap();
        let code = back.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).expect("a code");
        let tokens: Value = reqwest::Client::new()
            .post(format!("{}/oauth2/token", self.issuer))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", RELYING_PARTY_REDIRECT)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens["id_token"].as_str().unwrap_or_else(|| panic!("an ID token: {tokens}")).to_owned()
    }
}

/// The redirect URI of the tests' own relying parties: a closed port, never visited.
pub const RELYING_PARTY_REDIRECT: &str = "http://127.0.0.1:1/cb";

/// The query parameter `name` of `url`.
pub fn challenge_of(url: &str, name: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap();
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_else(|| panic!("{name} in {url}"))
}

/// A browser: cookies kept, redirects not followed (the tests look at each).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The `kid` of a JWT's header.
pub fn key_id(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap_or_default().to_owned()
}

/// The `exp` of a JWT, in seconds since the epoch.
pub fn expiry(token: &str) -> i64 {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let payload: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    payload["exp"].as_i64().unwrap()
}
