//! Held credentials rotate without a restart: a changed secret file is picked up by new
//! connections while live sessions keep theirs; a bad reload keeps the running config.

use portcullis_tests::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_file_applies_to_new_connections() {
    let h = Harness::start().await;
    let live = h.client().await;
    let mut reloads = h.gateway.reloads();
    h.rotate_secret("gw_app", "rotated-secret-1");
    // The file watcher notices the change and reloads.
    reloads.changed().await.unwrap();
    let fresh = h.client().await;
    assert_eq!(
        fresh
            .query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    // The session that logged in with the old secret keeps working.
    assert_eq!(
        live.query_one("select 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_keeps_the_running_configuration() {
    let h = Harness::start().await;
    let good = std::fs::read_to_string(&h.config_path).unwrap();
    std::fs::write(&h.config_path, format!("{good}\n[listen]\nbogus = 1\n")).unwrap();
    let err = h.gateway.reload().unwrap_err().to_string();
    assert!(err.contains("portcullis.toml"), "{err}");
    assert!(err.contains("line"), "{err}");
    // Still serving with the old configuration.
    let c = h.client().await;
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );

    // A secret that cannot be read is also refused as a whole.
    std::fs::write(&h.config_path, &good).unwrap();
    std::fs::remove_file(h.dir().join("secrets/gw_admin")).unwrap();
    let err = h.gateway.reload().unwrap_err().to_string();
    assert!(
        err.contains("role 'gw_admin'") && err.contains("cannot read secret file"),
        "{err}"
    );
    let admin = h.admin().await;
    assert_eq!(
        admin
            .query_one("select current_user::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "gw_admin"
    );
    assert!(
        !err.contains("secret-"),
        "the error must not show a secret: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_can_be_added_by_reload() {
    let h = Harness::start().await;
    let token = h.token("erin", &["engineering"]);
    let mut raw = portcullis_tests::raw::RawClient::connect(h.port()).await;
    assert_eq!(
        raw.login("reporting", &token).await.unwrap_err().code(),
        "3D000"
    );
    let mut config = std::fs::read_to_string(&h.config_path).unwrap();
    config.push_str(&format!(
        "\n[[target]]\nname = \"reporting\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"app\"\ntls = \"disable\"\n[[target.role]]\nname = \"gw_app\"\nsecret = \"file:secrets/gw_app\"\ngroups = [\"engineering\"]\n",
        h.pg.port()
    ));
    std::fs::write(&h.config_path, config).unwrap();
    h.gateway.reload().unwrap();
    let c = h
        .connect_as("erin", &["engineering"], "reporting")
        .await
        .unwrap();
    assert_eq!(
        c.query_one("select current_database()::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "app"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_apply_to_live_sessions_and_bad_ones_are_refused() {
    let h = portcullis_tests::Harness::with(portcullis_tests::Setup {
        policies: vec![("p.cedar".into(), portcullis_tests::PERMIT_ALL.into())],
        ..portcullis_tests::Setup::default()
    })
    .await;
    let c = h.client().await;
    c.batch_execute("create table notes (id int)")
        .await
        .unwrap();
    let policy = h.dir().join("policies/p.cedar");

    // Tighten: a forbid for the table. The live session is refused at its next statement.
    std::fs::write(
        &policy,
        "permit(principal, action, resource);\n@id(\"no-notes\")\nforbid(principal, action, resource == Table::\"public.notes\");\n",
    )
    .unwrap();
    h.gateway.reload().unwrap();
    let err = c.batch_execute("select * from notes").await.unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("no-notes"));

    // A policy that does not validate: the reload fails, says where, and the running
    // policies stay in force.
    std::fs::write(
        &policy,
        "permit(principal, action == Action::\"selekt\", resource);\n",
    )
    .unwrap();
    let err = h.gateway.reload().unwrap_err().to_string();
    assert!(
        err.contains("p.cedar:1:") && err.contains("selekt"),
        "{err}"
    );
    let err = c.batch_execute("select * from notes").await.unwrap_err();
    assert!(err.as_db_error().unwrap().message().contains("no-notes"));
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}
