//! What a dry-run apply would change, as `kubectl diff --server-side` shows it: the live object
//! and the object as the API server would store it, both without what changes on every write
//! (managed fields, resource version, generation) and without status, written as YAML and
//! compared line by line (a unified diff). A Secret's values are masked as kubectl masks them.

use serde_json::Value;

/// The object as compared: without managed fields, resource version, generation and status.
pub fn normalized(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in ["managedFields", "resourceVersion", "generation"] {
                meta.remove(key);
            }
        }
    }
    object
}

/// Replaces a Secret's values: `***` where both sides agree, `*** (before)` and `*** (after)`
/// where they differ, so a diff tells which keys change without showing any value.
fn mask_secret(live: Option<&mut Value>, merged: &mut Value) {
    let live_data = live.and_then(|l| l.get_mut("data")).and_then(Value::as_object_mut);
    let merged_data = merged.get_mut("data").and_then(Value::as_object_mut);
    match (live_data, merged_data) {
        (Some(before), Some(after)) => {
            for (key, value) in after.iter_mut() {
                let old = before.get_mut(key);
                let same = old.as_deref() == Some(value);
                match old {
                    Some(old) if same => *old = Value::String("***".into()),
                    Some(old) => *old = Value::String("*** (before)".into()),
                    None => {}
                }
                *value = Value::String(if same { "***" } else { "*** (after)" }.into());
            }
            for (key, value) in before.iter_mut() {
                if !after.contains_key(key) {
                    *value = Value::String("*** (before)".into());
                }
            }
        }
        (Some(before), None) => before.values_mut().for_each(|v| *v = Value::String("*** (before)".into())),
        (None, Some(after)) => after.values_mut().for_each(|v| *v = Value::String("*** (after)".into())),
        (None, None) => {}
    }
}

/// The unified diff between the live object (absent: it would be created) and what the API
/// server would store, named as kubectl names its files; empty when nothing would change.
pub fn diff(live: Option<&Value>, merged: &Value, name: &str) -> String {
    let mut live = live.map(normalized);
    let mut merged = normalized(merged);
    if merged.get("kind").and_then(Value::as_str) == Some("Secret") {
        mask_secret(live.as_mut(), &mut merged);
    }
    let yaml = |v: &Value| serde_saphyr::to_string(v).unwrap_or_default();
    let before = live.as_ref().map(yaml).unwrap_or_default();
    let after = yaml(&merged);
    if before == after {
        return String::new();
    }
    similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{name}"), &format!("merged/{name}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changed_lines(diff: &str) -> Vec<String> {
        diff.lines()
            .filter(|l| (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---"))
            .map(|l| format!("{}{}", &l[..1], l[1..].trim()))
            .collect()
    }

    #[test]
    fn bookkeeping_and_status_are_left_out_and_changes_are_shown() {
        let live = json!({ "kind": "Deployment", "metadata": { "name": "web", "generation": 1, "resourceVersion": "5",
            "managedFields": [{ "manager": "x" }] }, "spec": { "replicas": 1 }, "status": { "readyReplicas": 1 } });
        let mut same = live.clone();
        same["metadata"]["generation"] = json!(2);
        same["metadata"]["resourceVersion"] = json!("9");
        same["status"]["readyReplicas"] = json!(0);
        assert_eq!(diff(Some(&live), &same, "apps.v1.Deployment.ns.web"), "", "nothing that counts changed");
        let mut scaled = same.clone();
        scaled["spec"]["replicas"] = json!(3);
        let text = diff(Some(&live), &scaled, "apps.v1.Deployment.ns.web");
        assert!(
            text.starts_with("--- live/apps.v1.Deployment.ns.web\n+++ merged/apps.v1.Deployment.ns.web\n"),
            "{text}"
        );
        assert_eq!(changed_lines(&text), ["-replicas: 1", "+replicas: 3"]);
        // A new object: every line is added.
        let created = diff(None, &scaled, "x");
        assert!(changed_lines(&created).iter().all(|l| l.starts_with('+')), "{created}");
        assert!(!created.contains("generation") && !created.contains("status"), "{created}");
    }

    #[test]
    fn a_secrets_values_never_show() {
        let live = json!({ "kind": "Secret", "metadata": { "name": "s" },
            "data": { "kept": "c2FtZQ==", "changed": "b2xk", "gone": "eA==" } });
        let merged = json!({ "kind": "Secret", "metadata": { "name": "s" },
            "data": { "kept": "c2FtZQ==", "changed": "bmV3", "new": "eQ==" } });
        let text = diff(Some(&live), &merged, "v1.Secret.ns.s");
        for value in ["c2FtZQ==", "b2xk", "bmV3", "eA==", "eQ=="] {
            assert!(!text.contains(value), "{value} shown in {text}");
        }
        let lines = changed_lines(&text);
        for expected in
            ["-changed: '*** (before)'", "+changed: '*** (after)'", "-gone: '*** (before)'", "+new: '*** (after)'"]
        {
            assert!(lines.iter().any(|l| l.replace('"', "'") == expected), "{expected} in {lines:?}");
        }
        assert!(!lines.iter().any(|l| l.contains("kept")), "an unchanged key is not a change: {lines:?}");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn an_unchanged_object_has_no_diff_and_any_object_diffs(live in crate::any_json(), merged in crate::any_json()) {
            prop_assert_eq!(diff(Some(&live), &live, "v1.ConfigMap.ns.x"), "");
            let text = diff(Some(&live), &merged, "v1.ConfigMap.ns.x");
            if !text.is_empty() {
                prop_assert!(text.starts_with("--- live/v1.ConfigMap.ns.x\n+++ merged/v1.ConfigMap.ns.x\n"), "{}", text);
            }
            let _ = diff(None, &merged, "v1.ConfigMap.ns.x");
        }
    }
}
