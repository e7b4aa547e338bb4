// kubegql's dashboard. It uses only the public GraphQL API, so it is also a small reference client:
// - queries and mutations: POST /graphql with `Authorization: Bearer <token>`;
// - subscriptions: one WebSocket to /graphql/ws speaking graphql-transport-ws, the token in
//   `connection_init`; reconnects with backoff and treats a reconnect like a RESYNC (reload);
// - lists: the first view is a server-side page of the API server's table (`Cluster.table`:
//   kubectl's columns for every kind), kept current by `resourceEvents(asTable: true)`, whose
//   events carry each object's new row; events that arrive while a page loads are applied after it;
// - an object's actions are offered as the caller may use them (`Cluster.access`), an edit is
//   previewed with a dry-run apply's diff before it is applied, and a pod's log is followed live;
// - every error the API gives is shown with its `extensions.code`.
// The token is kept in this tab's session storage (shared with the GraphiQL page), never in a URL;
// with single sign-on it comes from the server's session (sso.js).
(function () {
  "use strict";

  var KEY = "kubegql.token";
  var ROLLOUT_KINDS = { Deployment: true, StatefulSet: true, DaemonSet: true };
  var $ = function (selector) {
    return document.querySelector(selector);
  };

  // ---------------------------------------------------------------- errors

  // Shows API errors (a GraphQL `errors` list) under the header, newest first, at most eight.
  function showErrors(where, errors) {
    var list = $("#errors");
    errors.forEach(function (error) {
      var item = document.createElement("li");
      var code = document.createElement("code");
      code.textContent = (error.extensions && error.extensions.code) || "ERROR";
      item.appendChild(code);
      item.appendChild(document.createTextNode(where + ": " + (error.message || String(error))));
      list.insertBefore(item, list.firstChild);
    });
    while (list.children.length > 8) {
      list.removeChild(list.lastChild);
    }
  }

  function clearErrors() {
    $("#errors").textContent = "";
  }

  // An error carrying the API's `errors` list.
  function ApiError(errors) {
    this.errors = errors;
    this.message = errors.map(function (e) {
      return e.message;
    }).join("; ");
  }

  function report(where) {
    return function (error) {
      showErrors(where, error instanceof ApiError ? error.errors : [{ message: String(error), extensions: { code: "CLIENT" } }]);
    };
  }

  // ---------------------------------------------------------------- HTTP

  function token() {
    return window.sessionStorage.getItem(KEY) || "";
  }

  function gql(query, variables) {
    return fetch("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + token() },
      body: JSON.stringify({ query: query, variables: variables || {} }),
    }).then(function (response) {
      return response.json().then(
        function (body) {
          if (body.errors && body.errors.length) {
            throw new ApiError(body.errors);
          }
          return body.data;
        },
        function () {
          throw new ApiError([{ message: "HTTP " + response.status, extensions: { code: "HTTP_" + response.status } }]);
        }
      );
    });
  }

  // ---------------------------------------------------------------- WebSocket (graphql-transport-ws)

  function Live() {
    this.subscriptions = new Map();
    this.nextId = 1;
    this.socket = null;
    this.ready = false;
    this.attempt = 0;
    this.stopped = false;
  }

  Live.prototype.open = function () {
    var self = this;
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    var socket = new WebSocket(scheme + "//" + window.location.host + "/graphql/ws", "graphql-transport-ws");
    self.socket = socket;
    self.ready = false;
    socket.onopen = function () {
      socket.send(JSON.stringify({ type: "connection_init", payload: { Authorization: "Bearer " + token() } }));
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      var subscription = self.subscriptions.get(message.id);
      switch (message.type) {
        case "connection_ack":
          self.ready = true;
          self.attempt = 0;
          setLive(true, "live");
          self.subscriptions.forEach(function (s, id) {
            self.send({ id: id, type: "subscribe", payload: { query: s.query, variables: s.variables } });
          });
          break;
        case "ping":
          self.send({ type: "pong" });
          break;
        case "next":
          if (subscription) {
            if (message.payload.errors) {
              showErrors(subscription.name, message.payload.errors);
            }
            if (message.payload.data) {
              subscription.onData(message.payload.data);
            }
          }
          break;
        case "error":
          if (subscription) {
            self.subscriptions.delete(message.id);
            showErrors(subscription.name, message.payload);
            if (subscription.onEnd) subscription.onEnd();
          }
          break;
        case "complete":
          if (subscription) {
            self.subscriptions.delete(message.id);
            if (subscription.onEnd) subscription.onEnd();
          }
          break;
      }
    };
    socket.onclose = function (event) {
      if (self.socket !== socket) return;
      self.ready = false;
      if (self.stopped) return;
      var code = event.code >= 4000 ? String(event.code) : "CLOSED_" + event.code;
      setLive(false, "live: closed (" + event.code + ")");
      if (event.code === 4401 || event.code === 4403) {
        // Refused credentials: trying again will not help; signing in again will.
        showErrors("live connection", [{ message: event.reason || "refused", extensions: { code: code } }]);
        return;
      }
      if (event.reason) {
        showErrors("live connection", [{ message: event.reason, extensions: { code: code } }]);
      }
      self.subscriptions.forEach(function (s) {
        if (s.onReconnect) s.onReconnect();
      });
      var delay = Math.min(30000, 500 * Math.pow(2, self.attempt));
      self.attempt += 1;
      window.setTimeout(function () {
        if (!self.stopped) self.open();
      }, delay);
    };
  };

  Live.prototype.send = function (message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  };

  // Starts a subscription; `handlers` has onData(data), and optionally onEnd() and onReconnect().
  // Returns a function that stops it.
  Live.prototype.subscribe = function (name, query, variables, handlers) {
    var self = this;
    var id = String(self.nextId++);
    var subscription = { name: name, query: query, variables: variables };
    Object.keys(handlers).forEach(function (k) {
      subscription[k] = handlers[k];
    });
    self.subscriptions.set(id, subscription);
    if (self.ready) {
      self.send({ id: id, type: "subscribe", payload: { query: query, variables: variables } });
    }
    return function () {
      if (self.subscriptions.delete(id) && self.ready) {
        self.send({ id: id, type: "complete" });
      }
    };
  };

  Live.prototype.close = function () {
    this.stopped = true;
    this.subscriptions.clear();
    if (this.socket) this.socket.close(1000);
    setLive(false, "live: off");
  };

  function setLive(on, text) {
    var badge = $("#live");
    badge.className = "live " + (on ? "on" : "off");
    badge.textContent = text;
  }

  // ---------------------------------------------------------------- state

  var live = null;
  var view = null; // the cluster, kind and namespace shown, with their rows
  var detail = null; // the object opened on the right
  var clustersTimer = null;
  var stopClusterChanges = null;

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  // ---------------------------------------------------------------- clusters

  var CLUSTERS =
    "query { clusters(first: 100) { nodes { id name status { reachable serverVersion latencyMs error errorKind warnings } } } }";

  function loadClusters() {
    return gql(CLUSTERS)
      .then(function (data) {
        var list = $("#clusters");
        list.textContent = "";
        data.clusters.nodes.forEach(function (cluster) {
          var item = document.createElement("li");
          item.dataset.id = cluster.id;
          item.dataset.name = cluster.name;
          if (view && view.clusterId === cluster.id) item.className = "selected";
          var name = document.createElement("span");
          name.className = "name";
          name.textContent = cluster.name;
          var status = document.createElement("span");
          var s = cluster.status;
          status.className = "status " + (s.reachable ? "up" : "down");
          status.textContent = s.reachable
            ? "reachable, " + text(s.serverVersion) + ", " + text(s.latencyMs) + " ms"
            : "unreachable: " + text(s.errorKind) + " " + text(s.error);
          if (s.warnings && s.warnings.length) status.title = s.warnings.join("\n");
          item.appendChild(name);
          item.appendChild(status);
          item.addEventListener("click", function () {
            chooseCluster(cluster.id);
          });
          list.appendChild(item);
        });
      })
      .catch(report("clusters"));
  }

  // ---------------------------------------------------------------- kinds and namespaces

  var KINDS =
    "query($id: ID!) { cluster(id: $id) { apiResources { group version kind plural namespaced verbs preferred } } }";
  var NAMESPACES = "query($id: ID!) { cluster(id: $id) { namespaces(first: 500) { nodes { metadata { name } } } } }";

  function kindKey(r) {
    return r.group + "/" + r.version + "/" + r.kind;
  }

  // Chooses a cluster: its kinds and namespaces fill the pickers (keeping the current choices
  // when the same cluster is reloaded), then the list is shown.
  function chooseCluster(id) {
    var keep = view && view.clusterId === id ? { kind: $("#kind").value, namespace: $("#namespace").value } : null;
    closeDetail();
    stopView();
    view = { clusterId: id, kinds: new Map() };
    document.querySelectorAll("#clusters li").forEach(function (li) {
      li.className = li.dataset.id === id ? "selected" : "";
    });
    var kinds = $("#kind");
    var namespaces = $("#namespace");
    kinds.disabled = namespaces.disabled = $("#reload").disabled = true;
    return Promise.all([gql(KINDS, { id: id }), gql(NAMESPACES, { id: id })])
      .then(function (answers) {
        if (!view || view.clusterId !== id) return;
        var resources = answers[0].cluster.apiResources.filter(function (r) {
          return r.preferred && r.verbs.indexOf("list") >= 0 && r.verbs.indexOf("watch") >= 0;
        });
        resources.sort(function (a, b) {
          return a.kind.localeCompare(b.kind) || a.group.localeCompare(b.group);
        });
        kinds.textContent = "";
        resources.forEach(function (r) {
          view.kinds.set(kindKey(r), r);
          var option = document.createElement("option");
          option.value = kindKey(r);
          option.textContent = r.kind + (r.group ? " (" + r.group + ")" : "");
          kinds.appendChild(option);
        });
        var preferred = view.kinds.has("apps/v1/Deployment") ? "apps/v1/Deployment" : kinds.value;
        kinds.value = preferred;
        namespaces.textContent = "";
        var all = document.createElement("option");
        all.value = "";
        all.textContent = "all namespaces";
        namespaces.appendChild(all);
        answers[1].cluster.namespaces.nodes.forEach(function (n) {
          var option = document.createElement("option");
          option.value = option.textContent = n.metadata.name;
          namespaces.appendChild(option);
        });
        if (keep && view.kinds.has(keep.kind)) kinds.value = keep.kind;
        if (keep && Array.from(namespaces.options).some(function (o) { return o.value === keep.namespace; })) {
          namespaces.value = keep.namespace;
        }
        kinds.disabled = namespaces.disabled = $("#reload").disabled = false;
        showView();
      })
      .catch(report("cluster"));
  }

  // ---------------------------------------------------------------- the list, kept live

  var ROW = "fragment Row on TableRow { text object { metadata { name namespace uid deletionTimestamp } } }";
  var PAGE =
    "query($id: ID!, $g: String, $v: String, $k: String!, $ns: String, $after: String) { cluster(id: $id) {" +
    " table(group: $g, version: $v, kind: $k, namespace: $ns, first: 50, after: $after) {" +
    " columns { name priority description } pageInfo { hasNextPage endCursor } remainingItemCount rows { ...Row } } } } " +
    ROW;
  var EVENTS =
    "subscription($id: ID!, $g: String, $v: String, $k: String!, $ns: String) {" +
    " resourceEvents(clusterId: $id, group: $g, version: $v, kind: $k, namespace: $ns, asTable: true) {" +
    " type resourceVersion columns { name priority description } row { ...Row } } } " +
    ROW;

  function stopView() {
    if (view && view.stop) view.stop();
    if (view) view.stop = null;
  }

  // Shows the chosen kind and namespace: subscribes first, then reads the first page, then applies
  // the events that came meanwhile, so that nothing between the two is missed.
  function showView() {
    stopView();
    closeDetail();
    var resource = view.kinds.get($("#kind").value);
    if (!resource) return;
    var namespace = resource.namespaced ? $("#namespace").value || null : null;
    $("#namespace").disabled = !resource.namespaced;
    // A new view object each time: answers and events meant for the one before are told apart
    // (`view !== v`) and dropped.
    var v = { clusterId: view.clusterId, kinds: view.kinds };
    view = v;
    v.resource = resource;
    v.namespace = namespace;
    v.rows = new Map();
    v.columns = [];
    v.counts = { ADDED: 0, MODIFIED: 0, DELETED: 0, RESYNC: 0 };
    v.pending = null;
    v.variables = { id: v.clusterId, g: resource.group, v: resource.version, k: resource.kind, ns: namespace };
    $("#resync").hidden = true;
    v.stop = live.subscribe("resourceEvents", EVENTS, v.variables, {
      onData: function (data) {
        onEvent(v, data.resourceEvents);
      },
      onReconnect: function () {
        resync(v, "the live connection was lost; reloading when it is back");
      },
    });
    loadFirstPage(v);
  }

  function loadFirstPage(v) {
    v.pending = [];
    v.rows = new Map();
    v.after = null;
    render(v);
    return loadPage(v);
  }

  function loadPage(v) {
    var variables = Object.assign({ after: v.after }, v.variables);
    return gql(PAGE, variables)
      .then(function (data) {
        if (view !== v) return;
        var page = data.cluster.table;
        if (page.columns.length) v.columns = page.columns;
        page.rows.forEach(function (row) {
          v.rows.set(row.object.metadata.uid, row);
        });
        v.after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
        v.remaining = page.remainingItemCount;
        var pending = v.pending || [];
        v.pending = null;
        pending.forEach(function (event) {
          apply(v, event);
        });
        render(v);
      })
      .catch(report("list"));
  }

  function onEvent(v, event) {
    if (view !== v) return;
    v.counts[event.type] = (v.counts[event.type] || 0) + 1;
    if (event.type === "RESYNC") {
      resync(v, "the server rebuilt this view (RESYNC); the list was reloaded");
      return;
    }
    if (v.pending) {
      v.pending.push(event);
    } else {
      apply(v, event);
      render(v);
    }
    if (detail && event.row && detail.uid === event.row.object.metadata.uid) {
      if (event.type === "DELETED") {
        objectDeleted(detail);
      } else {
        refreshDetailSoon();
      }
    }
  }

  // An event's row replaces the row of the same object, or removes it.
  function apply(v, event) {
    var row = event.row;
    if (!row) return;
    if (event.columns && event.columns.length) v.columns = event.columns;
    if (event.type === "DELETED") {
      v.rows.delete(row.object.metadata.uid);
    } else {
      v.rows.set(row.object.metadata.uid, row);
    }
  }

  function resync(v, why) {
    if (view !== v) return;
    var notice = $("#resync");
    notice.hidden = false;
    notice.textContent = new Date().toLocaleTimeString() + ": " + why;
    loadFirstPage(v);
  }

  // The columns shown: kubectl's (priority 0), all of them when "wide" is ticked (`-o wide`),
  // after a NAMESPACE column for all namespaces of a namespaced kind (`-A`).
  function shownColumns(v) {
    var wide = $("#wide").checked;
    var shown = [];
    if (v.resource.namespaced && !v.namespace) shown.push({ name: "Namespace", index: -1, description: "" });
    v.columns.forEach(function (c, i) {
      if (wide || c.priority === 0) shown.push({ name: c.name, index: i, description: c.description });
    });
    return shown;
  }

  function render(v) {
    if (view !== v) return;
    var columns = shownColumns(v);
    var head = $("#objects thead tr");
    head.textContent = "";
    columns.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c.name.toUpperCase();
      th.title = c.description || "";
      head.appendChild(th);
    });
    var body = $("#objects tbody");
    body.textContent = "";
    var rows = Array.from(v.rows.values());
    rows.sort(function (a, b) {
      var x = a.object.metadata, y = b.object.metadata;
      return text(x.namespace).localeCompare(text(y.namespace)) || x.name.localeCompare(y.name);
    });
    rows.forEach(function (row) {
      var meta = row.object.metadata;
      var tr = document.createElement("tr");
      tr.dataset.name = meta.name;
      tr.dataset.namespace = text(meta.namespace);
      if (detail && detail.uid === meta.uid) tr.className = "open";
      if (meta.deletionTimestamp) tr.className += " terminating";
      columns.forEach(function (c) {
        var td = document.createElement("td");
        td.textContent = c.index < 0 ? text(meta.namespace) : text(row.text[c.index]);
        tr.appendChild(td);
      });
      tr.addEventListener("click", function () {
        openDetail(v, meta);
      });
      body.appendChild(tr);
    });
    var counts = v.counts;
    $("#counts").textContent =
      rows.length +
      " shown" +
      (v.remaining ? ", " + v.remaining + " more on the server" : "") +
      (v.after ? " (more pages)" : "") +
      ". Live events: " +
      counts.ADDED +
      " added, " +
      counts.MODIFIED +
      " modified, " +
      counts.DELETED +
      " deleted, " +
      counts.RESYNC +
      " resyncs.";
    $("#more").hidden = !v.after;
  }

  // ---------------------------------------------------------------- one object

  var OBJECT =
    "query($id: ID!, $g: String, $v: String, $k: String!, $ns: String, $n: String!) { cluster(id: $id) {" +
    " resource(group: $g, version: $v, kind: $k, namespace: $ns, name: $n) { metadata { uid } yaml" +
    " events(first: 20) { nodes { type reason message count lastTimestamp } } } } }";
  var ROLLOUT =
    "subscription($id: ID!, $k: String!, $ns: String!, $n: String!) { rolloutStatus(clusterId: $id, kind: $k, namespace: $ns, name: $n) { done failed message } }";

  function openDetail(v, meta) {
    closeDetail();
    detail = {
      view: v,
      uid: meta.uid,
      variables: Object.assign({}, v.variables, { ns: meta.namespace || null, n: meta.name }),
      stopRollout: null,
      stopLogs: null,
      timer: null,
    };
    $("#detail").hidden = false;
    $("main").classList.add("with-detail");
    $("#detail-title").textContent = v.resource.kind + " " + (meta.namespace ? meta.namespace + "/" : "") + meta.name;
    $("#follow").hidden = !ROLLOUT_KINDS[v.resource.kind] || v.resource.group !== "apps";
    $("#rollout").textContent = "";
    $("#editor").hidden = true;
    $("#logs-view").hidden = true;
    $("#logtext").textContent = "";
    render(v);
    refreshDetail();
    checkAccess(detail);
  }

  function refreshDetail() {
    var d = detail;
    if (!d || d.deleted) return;
    gql(OBJECT, d.variables)
      .then(function (data) {
        if (detail !== d) return;
        var object = data.cluster.resource;
        $("#yaml").textContent = object.yaml;
        var body = $("#events tbody");
        body.textContent = "";
        object.events.nodes.forEach(function (e) {
          var tr = document.createElement("tr");
          [e.type, e.reason, e.count, e.lastTimestamp, e.message].forEach(function (value) {
            var td = document.createElement("td");
            td.textContent = text(value);
            tr.appendChild(td);
          });
          body.appendChild(tr);
        });
      })
      .catch(report("object"));
  }

  // The open object was deleted: it stays on show, marked so, and is no longer read.
  function objectDeleted(d) {
    d.deleted = true;
    if (d.timer) window.clearTimeout(d.timer);
    d.timer = null;
    $("#detail-title").textContent += " (deleted)";
    $("#edit").disabled = true;
  }

  // The open object changed: read it again, at most once a second.
  function refreshDetailSoon() {
    if (!detail || detail.timer || detail.deleted) return;
    var d = detail;
    d.timer = window.setTimeout(function () {
      d.timer = null;
      if (detail === d) refreshDetail();
    }, 1000);
  }

  function followRollout() {
    var d = detail;
    if (!d || d.stopRollout) return;
    var log = $("#rollout");
    log.textContent = "";
    var v = d.variables;
    d.stopRollout = live.subscribe(
      "rolloutStatus",
      ROLLOUT,
      { id: v.id, k: v.k, ns: v.ns, n: v.n },
      {
        onData: function (data) {
          if (detail !== d) return;
          var s = data.rolloutStatus;
          var last = log.lastElementChild;
          // The same words again (another change that did not move the rollout): counted, not repeated.
          if (last && last.dataset.message === s.message && !s.done && !s.failed) {
            var times = Number(last.dataset.times || "1") + 1;
            last.dataset.times = String(times);
            last.querySelector(".repeat").textContent = "×" + times;
            return;
          }
          var item = document.createElement("li");
          item.dataset.message = s.message;
          item.textContent = new Date().toLocaleTimeString() + " " + s.message;
          var repeat = document.createElement("span");
          repeat.className = "repeat";
          item.appendChild(repeat);
          if (s.done) item.className = "done";
          if (s.failed) item.className = "failed";
          log.appendChild(item);
        },
        onEnd: function () {
          d.stopRollout = null;
        },
        onReconnect: function () {
          if (detail !== d) return;
          var item = document.createElement("li");
          item.textContent = "live connection lost; following again when it is back";
          log.appendChild(item);
        },
      }
    );
  }

  function closeDetail() {
    if (!detail) return;
    if (detail.stopRollout) detail.stopRollout();
    if (detail.stopLogs) detail.stopLogs();
    if (detail.timer) window.clearTimeout(detail.timer);
    var v = detail.view;
    detail = null;
    $("#detail").hidden = true;
    $("main").classList.remove("with-detail");
    if (view === v) render(v);
  }

  // ---------------------------------------------------------------- may I?

  var ACCESS =
    "query($id: ID!, $checks: [AccessCheckInput!]!) { cluster(id: $id) { access(checks: $checks) { allowed reason } } }";

  // Offers the object's actions as the caller may use them: kubegql's role and the cluster's
  // RBAC for the identity kubegql uses for this caller decide, not the page.
  function checkAccess(d) {
    var r = d.view.resource;
    var isPod = r.kind === "Pod" && r.group === "";
    var object = { group: r.group, resource: r.plural, namespace: d.variables.ns, name: d.variables.n };
    var checks = [Object.assign({ verb: "patch" }, object)];
    if (isPod) checks.push(Object.assign({ verb: "get", subresource: "log" }, object, { resource: "pods" }));
    [["#edit", "Edit"], ["#logs", "Follow logs"]].forEach(function (b) {
      var button = $(b[0]);
      button.disabled = true;
      button.textContent = b[1];
      button.title = "checking…";
    });
    $("#logs").hidden = !isPod;
    gql(ACCESS, { id: d.variables.id, checks: checks })
      .then(function (data) {
        if (detail !== d) return;
        var answers = data.cluster.access;
        offer($("#edit"), answers[0]);
        if (isPod) offer($("#logs"), answers[1]);
      })
      .catch(report("access"));
  }

  function offer(button, answer) {
    button.disabled = !answer.allowed;
    button.title = answer.allowed ? "" : "not allowed: " + text(answer.reason);
    if (!answer.allowed) button.textContent += " (not allowed)";
  }

  // ---------------------------------------------------------------- edit: diff, then apply

  var WHOLE =
    "query($id: ID!, $g: String, $v: String, $k: String!, $ns: String, $n: String!) { cluster(id: $id) {" +
    " resource(group: $g, version: $v, kind: $k, namespace: $ns, name: $n) { json } } }";
  var APPLY =
    "mutation($id: ID!, $m: String!, $dry: Boolean) { apply(clusterId: $id, manifest: $m, force: true, dryRun: $dry) {" +
    " succeeded failed documents { kind name action diff error { code message } } } }";

  // Opens the editor with the object as JSON, without its status (the API server keeps it).
  function startEdit() {
    var d = detail;
    if (!d) return;
    gql(WHOLE, d.variables)
      .then(function (data) {
        if (detail !== d) return;
        var object = data.cluster.resource.json;
        delete object.status;
        $("#manifest").value = JSON.stringify(object, null, 2);
        $("#diff").textContent = "";
        $("#applied").textContent = "";
        $("#apply").disabled = true;
        $("#editor").hidden = false;
      })
      .catch(report("edit"));
  }

  function applyEdit(dry) {
    var d = detail;
    if (!d) return;
    var manifest = $("#manifest").value;
    gql(APPLY, { id: d.variables.id, m: manifest, dry: dry })
      .then(function (data) {
        if (detail !== d) return;
        var result = data.apply;
        var failed = result.documents.filter(function (doc) {
          return doc.error;
        });
        if (failed.length) {
          showErrors(dry ? "preview" : "apply", failed.map(function (doc) {
            return { message: doc.kind + " " + doc.name + ": " + doc.error.message, extensions: { code: doc.error.code } };
          }));
          return;
        }
        if (dry) {
          var diff = result.documents.map(function (doc) {
            return doc.diff || "";
          }).join("");
          $("#diff").textContent = diff || "no change";
          // Applied exactly as previewed: a change to the text needs a new preview.
          $("#apply").disabled = !diff;
          d.previewed = manifest;
        } else {
          $("#applied").textContent = result.documents.map(function (doc) {
            return doc.kind + " " + doc.name + ": " + doc.action;
          }).join(", ");
          $("#apply").disabled = true;
          refreshDetail();
        }
      })
      .catch(report(dry ? "preview" : "apply"));
  }

  // ---------------------------------------------------------------- a pod's log, followed

  var LOGS =
    "subscription($id: ID!, $ns: String!, $pod: String!) { logStream(clusterId: $id, namespace: $ns, pod: $pod, tailLines: 100) {" +
    " type container line message dropped } }";
  var MAX_LOG_LINES = 1000;

  function followLogs() {
    var d = detail;
    if (!d || d.stopLogs) return;
    var out = $("#logtext");
    out.textContent = "";
    $("#logs-view").hidden = false;
    d.stopLogs = live.subscribe(
      "logStream",
      LOGS,
      { id: d.variables.id, ns: d.variables.ns, pod: d.variables.n },
      {
        onData: function (data) {
          if (detail !== d) return;
          var e = data.logStream;
          var line = e.type === "LINE" ? e.line : "[" + e.type + (e.dropped ? " " + e.dropped : "") + "] " + text(e.message);
          out.appendChild(document.createTextNode(line + "\n"));
          while (out.childNodes.length > MAX_LOG_LINES) out.removeChild(out.firstChild);
          out.scrollTop = out.scrollHeight;
        },
        onEnd: function () {
          d.stopLogs = null;
        },
      }
    );
  }

  // ---------------------------------------------------------------- signing in and out

  function start() {
    clearErrors();
    stop();
    var who = $("#who");
    if (!token()) {
      who.textContent = "enter a token to start";
      return;
    }
    gql("query { viewer { name role tenant } }")
      .then(function (data) {
        who.textContent = data.viewer.name + " (" + data.viewer.role + ", tenant " + data.viewer.tenant + ")";
        live = new Live();
        live.open();
        stopClusterChanges = live.subscribe("clusterChanges", "subscription { clusterChanges { kind clusterId name } }", {}, {
          onData: loadClusters,
        });
        clustersTimer = window.setInterval(loadClusters, 15000);
        return loadClusters();
      })
      .catch(function (error) {
        who.textContent = "not signed in";
        report("sign in")(error);
      });
  }

  function stop() {
    if (clustersTimer) window.clearInterval(clustersTimer);
    clustersTimer = null;
    if (stopClusterChanges) stopClusterChanges();
    stopClusterChanges = null;
    closeDetail();
    stopView();
    view = null;
    if (live) live.close();
    live = null;
    $("#clusters").textContent = "";
    $("#objects tbody").textContent = "";
    $("#counts").textContent = "";
    $("#kind").disabled = $("#namespace").disabled = $("#reload").disabled = true;
  }

  $("#signin").addEventListener("submit", function (event) {
    event.preventDefault();
    var input = $("#token");
    var value = input.value.trim();
    input.value = "";
    if (value) window.sessionStorage.setItem(KEY, value);
    start();
  });
  $("#signout").addEventListener("click", function () {
    window.KubegqlSso.signOut().then(function () {
      window.sessionStorage.removeItem(KEY);
      signedInWith = "";
      stop();
      $("#who").textContent = "signed out";
    });
  });
  $("#kind").addEventListener("change", showView);
  $("#namespace").addEventListener("change", showView);
  $("#reload").addEventListener("click", function () {
    if (view) chooseCluster(view.clusterId);
  });
  $("#more").addEventListener("click", function () {
    if (view && view.after) loadPage(view);
  });
  $("#follow").addEventListener("click", followRollout);
  $("#wide").addEventListener("change", function () {
    if (view && view.resource) render(view);
  });
  $("#edit").addEventListener("click", startEdit);
  $("#preview").addEventListener("click", function () {
    applyEdit(true);
  });
  $("#apply").addEventListener("click", function () {
    if (detail && detail.previewed === $("#manifest").value) applyEdit(false);
  });
  $("#manifest").addEventListener("input", function () {
    $("#apply").disabled = true;
  });
  $("#logs").addEventListener("click", followLogs);
  $("#close").addEventListener("click", closeDetail);
  // With single sign-on: a refreshed token is used by the next request and renews the open
  // WebSocket; only a new person starts the page over.
  var signedInWith = "";
  start();
  window.KubegqlSso.start(
    $("#sso"),
    function (session) {
      if (session.viewer.id !== signedInWith) {
        signedInWith = session.viewer.id;
        start();
      } else if (live && live.ready) {
        // The open WebSocket goes on with the refreshed token (a graphql-transport-ws ping that
        // carries it) instead of ending when the old one expires.
        live.send({ type: "ping", payload: { Authorization: "Bearer " + token() } });
      }
    },
    function () {
      signedInWith = "";
      stop();
      $("#who").textContent = "signed out";
    }
  );
})();
