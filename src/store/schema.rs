// One schema for both backends: every column type here maps the same on SQLite and PostgreSQL
// (TEXT ids, BLOB/BYTEA envelopes, naive UTC timestamps), so queries are written once.

diesel::table! {
    clusters (id) {
        id -> Text,
        tenant -> Text,
        name -> Text,
        mode -> Text,
        kubeconfig_path -> Nullable<Text>,
        kubeconfig_context -> Nullable<Text>,
        kubeconfig_sealed -> Nullable<Binary>,
        api_server_url -> Nullable<Text>,
        bearer_token_sealed -> Nullable<Binary>,
        ca_data_sealed -> Nullable<Binary>,
        ca_fingerprint_sha256 -> Nullable<Text>,
        client_certificate_sealed -> Nullable<Binary>,
        client_key_sealed -> Nullable<Binary>,
        tls_server_name -> Nullable<Text>,
        insecure_skip_tls_verify -> Bool,
        default_namespace -> Nullable<Text>,
        impersonate_caller -> Bool,
        labels -> Text,
        key_id -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    principals (id) {
        id -> Text,
        name -> Text,
        kind -> Text,
        role -> Text,
        tenant -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        principal_id -> Text,
        name -> Text,
        token_sha256 -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        seq -> Nullable<BigInt>,
        started_at -> Timestamp,
        request_id -> Text,
        principal_id -> Nullable<Text>,
        principal_name -> Nullable<Text>,
        tenant -> Nullable<Text>,
        impersonated -> Nullable<Text>,
        cluster_id -> Nullable<Text>,
        operation -> Nullable<Text>,
        field -> Text,
        verb -> Nullable<Text>,
        api_group -> Nullable<Text>,
        api_version -> Nullable<Text>,
        kind -> Nullable<Text>,
        namespace -> Nullable<Text>,
        name -> Nullable<Text>,
        dry_run -> Bool,
        outcome -> Text,
        error_code -> Nullable<Text>,
        duration_ms -> Nullable<BigInt>,
        arguments -> Text,
        prev_hash -> Nullable<Text>,
        hash -> Nullable<Text>,
    }
}

diesel::joinable!(api_tokens -> principals (principal_id));
diesel::allow_tables_to_appear_in_same_query!(clusters, principals, api_tokens, audit_events);
