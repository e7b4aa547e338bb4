// Single sign-on for kubegql's pages, when the server has it configured. The browser holds only
// an HttpOnly session cookie; the page asks POST /auth/session for its ID token (refreshed by the
// server when it is about to expire) and keeps it, like an API token, in this tab's session
// storage, never in a URL. The token is asked for again before it expires; WebSockets opened with
// an old token are closed by the server when it expires, and the pages open them again with the
// new one.
window.KubegqlSso = (function () {
  "use strict";
  var KEY = "kubegql.token";
  var MODE = "kubegql.sso";
  var timer = null;
  var hooks = { signedIn: function () {}, signedOut: function () {} };

  function forget() {
    window.clearTimeout(timer);
    if (window.sessionStorage.getItem(MODE)) {
      window.sessionStorage.removeItem(KEY);
      window.sessionStorage.removeItem(MODE);
      return true;
    }
    return false;
  }

  // Asks for the session's token. Resolves to "off" (not configured), "out" or "in".
  function ask() {
    return fetch("/auth/session", { method: "POST", credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 404) return "off";
        if (!response.ok) {
          if (forget()) hooks.signedOut();
          return "out";
        }
        return response.json().then(function (session) {
          var fresh = window.sessionStorage.getItem(KEY) !== session.token;
          window.sessionStorage.setItem(KEY, session.token);
          window.sessionStorage.setItem(MODE, "1");
          // Again 30 s before it expires (the server refreshes within 60 s of expiry).
          var wait = Date.parse(session.expiresAt) - Date.now() - 30000;
          window.clearTimeout(timer);
          timer = window.setTimeout(ask, Math.max(wait, 5000));
          if (fresh) hooks.signedIn(session);
          return "in";
        });
      })
      .catch(function () {
        return "off";
      });
  }

  // Shows the sign-in link when single sign-on is configured; signs the page in when the browser
  // has a session.
  function start(link, signedIn, signedOut) {
    hooks.signedIn = signedIn;
    hooks.signedOut = signedOut;
    link.href = "/auth/login?return=" + encodeURIComponent(window.location.pathname);
    return ask().then(function (state) {
      link.hidden = state !== "out";
      return state;
    });
  }

  // Ends the session (when the page signed in with it); resolves to true when it did.
  function signOut() {
    if (!forget()) return Promise.resolve(false);
    return fetch("/auth/logout", { method: "POST", credentials: "same-origin" })
      .then(function (response) {
        return response.json();
      })
      .then(function (answer) {
        if (answer.endSessionUrl) window.location.assign(answer.endSessionUrl);
        return true;
      })
      .catch(function () {
        return true;
      });
  }

  return { start: start, signOut: signOut };
})();
