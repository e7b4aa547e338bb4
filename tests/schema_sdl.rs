//! `schema.graphql` is the SDL of the running schema: it must match what `kubegql schema` prints.

#[test]
fn checked_in_sdl_matches_the_schema() {
    // The checkout is read at run time: the build directory is shared between checkouts.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let checked_in = std::fs::read_to_string(format!("{dir}/schema.graphql")).expect("schema.graphql exists");
    let live = kubegql::graphql::sdl();
    assert!(
        checked_in == live,
        "schema.graphql differs from the schema; regenerate it with `cargo run -- schema > schema.graphql`"
    );
}

#[test]
fn the_schema_command_prints_the_same_sdl() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kubegql")).arg("schema").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), kubegql::graphql::sdl());
}
