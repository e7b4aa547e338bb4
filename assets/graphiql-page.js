// kubegql's GraphiQL page: the API token is entered once and kept in this browser tab's session
// storage (never in the URL); queries go to /graphql with it, subscriptions to /graphql/ws
// (graphql-transport-ws) with it in connection_init. Everything the page loads comes from this
// server.
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

  function render() {
    var token = window.sessionStorage.getItem(KEY) || "";
    who.textContent = token ? "signed in for this tab" : "enter a token to load the schema";
    // A new key makes GraphiQL start over with the new fetcher, schema included.
    generation += 1;
    root.render(
      React.createElement(GraphiQL, {
        key: "session-" + generation,
        fetcher: fetcherFor(token),
        defaultEditorToolsVisibility: true,
      })
    );
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
    window.sessionStorage.removeItem(KEY);
    render();
  });
  render();
})();
