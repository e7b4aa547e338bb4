// kubegql's GraphiQL page: the API token is entered once (or comes from single sign-on, see
// sso.js) and kept in this browser tab's session storage (never in the URL); queries go to
// /graphql with it, subscriptions to /graphql/ws (graphql-transport-ws) with it in
// connection_init. Each request takes the token current at that moment, so a refreshed sign-on
// token is used without starting over. Everything the page loads comes from this server.
(function () {
  "use strict";
  var KEY = "kubegql.token";
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  var input = document.getElementById("token");
  var who = document.getElementById("who");
  var generation = 0;

  function fetcherFor(token) {
    var headers = token ? { Authorization: "Bearer " + token } : {};
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return GraphiQL.createFetcher({
      url: "/graphql",
      subscriptionUrl: scheme + "//" + window.location.host + "/graphql/ws",
      headers: headers,
      wsConnectionParams: headers,
    });
  }

  function currentToken() {
    return window.sessionStorage.getItem(KEY) || "";
  }

  function fetcher(params, options) {
    return fetcherFor(currentToken())(params, options);
  }

  function render(session) {
    var token = currentToken();
    if (session && session.viewer) {
      who.textContent = session.viewer.name + " (" + session.viewer.role + ", tenant " + session.viewer.tenant + ")";
    } else {
      who.textContent = token ? "signed in for this tab" : "enter a token to load the schema";
    }
    // A new key makes GraphiQL start over, schema included. Without a token there is no schema
    // to ask for (`schema: null`): a request without one would only be refused, and its answer
    // could arrive after the one made with the token and hide the schema.
    generation += 1;
    var props = { key: "session-" + generation, fetcher: fetcher, defaultEditorToolsVisibility: true };
    if (!token) props.schema = null;
    root.render(React.createElement(GraphiQL, props));
  }

  var signedInWith = "";
  function signedIn(session) {
    // A refreshed token is used by the next request; only a new person starts over.
    if (session.viewer.id !== signedInWith) {
      signedInWith = session.viewer.id;
      render(session);
    }
  }

  document.getElementById("signin").addEventListener("submit", function (event) {
    event.preventDefault();
    var token = input.value.trim();
    if (token) {
      window.sessionStorage.setItem(KEY, token);
    }
    input.value = "";
    render();
  });
  document.getElementById("signout").addEventListener("click", function () {
    window.KubegqlSso.signOut().then(function () {
      window.sessionStorage.removeItem(KEY);
      signedInWith = "";
      render();
    });
  });
  render();
  window.KubegqlSso.start(document.getElementById("sso"), signedIn, function () {
    signedInWith = "";
    render();
  });
})();
