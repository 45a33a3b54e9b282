//! The interactive shell driven through stdin, and how ftc finds its server: argument over
//! FTC_SERVER over the config file.

use std::fs;

use integration_tests::{bin, ftc, ftc_with, listing, ndjson, Workspace, TEST_USER};

#[test]
fn the_shell_runs_a_script_over_one_connection_and_survives_failures() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    ws.file("notes.txt", b"shell content");
    fs::create_dir(ws.src().join("dir")).unwrap();
    fs::write(ws.src().join("dir/inner.txt"), b"inner").unwrap();
    let script = "\
help
put notes.txt dir
ls
ls 'dir/*'
get notes.txt -o restored
rm ghost.txt
frobnicate
info
rm notes.txt
ls
cd box
pwd
put notes.txt
ls
lcd dir
lpwd
put inner.txt
cd ..
pwd
quit
put never-reached.txt
";
    let output = ftc_with(
        &ws.src(),
        &["shell", &server.address()],
        &[],
        Some(script.as_bytes()),
    );
    // `rm ghost.txt` failed (1); `frobnicate` is only a message: the worst status wins.
    output.expect_code(1);
    // cd and pwd move in the server's folders; put stores under them; lcd moves locally.
    assert!(output.stdout.contains("/box\n"), "{output}");
    assert_eq!(
        fs::read(ws.recv().join("box/notes.txt")).unwrap(),
        b"shell content"
    );
    assert_eq!(fs::read(ws.recv().join("box/inner.txt")).unwrap(), b"inner");
    assert!(
        output
            .stdout
            .contains(&format!("{}\n", ws.src().join("dir").display())),
        "{output}"
    );
    assert!(output.stdout.contains("commands:"), "{output}");
    assert!(
        output.stdout.contains("stored notes.txt")
            && output.stdout.contains("stored dir/inner.txt"),
        "{output}"
    );
    assert!(output.stdout.contains("saved notes.txt"), "{output}");
    assert!(
        output.stderr.contains("ghost.txt")
            && output.stderr.contains("unknown command 'frobnicate'"),
        "{output}"
    );
    assert!(output.stdout.contains("files stored:     2"), "{output}");
    assert!(output.stdout.contains("deleted notes.txt"), "{output}");
    assert!(
        output.stdout.contains("1 file, 5 B"),
        "after rm only dir/inner.txt is left: {output}"
    );
    assert_eq!(
        fs::read(ws.src().join("restored/notes.txt")).unwrap(),
        b"shell content"
    );
    assert!(!output.stdout.contains("never-reached"), "{output}");
    assert_eq!(
        server.log().matches("client connected").count(),
        1,
        "one connection: {}",
        server.log()
    );
    assert_eq!(
        ws.stored_names(),
        ["box/inner.txt", "box/notes.txt", "dir/inner.txt"]
    );
}

#[test]
fn a_clean_shell_script_exits_zero() {
    let ws = Workspace::new();
    let server = ws.server(&[]);
    ws.file("x.txt", b"x");
    let output = ftc_with(
        &ws.src(),
        &["shell", &server.address()],
        &[],
        Some(b"put x.txt\nls\n"),
    );
    output.success();
    assert_eq!(listing(&server, &ws.src()).len(), 1);
}

fn write_config(ws: &Workspace, text: &str) -> String {
    let dir = ws.root.path().join("xdg");
    fs::create_dir_all(dir.join("ftc")).unwrap();
    fs::write(dir.join("ftc/config.toml"), text).unwrap();
    dir.to_str().unwrap().to_owned()
}

#[test]
fn the_server_comes_from_argument_then_environment_then_config_file() {
    let ws = Workspace::new();
    let from_file = ws.server(&[]);
    let from_env = integration_tests::Server::start(&ws.root.path().join("recv-env"), &[]);
    let from_arg = integration_tests::Server::start(&ws.root.path().join("recv-arg"), &[]);
    let xdg = write_config(
        &ws,
        &format!("server = \"{}\"\nretries = 2\n", from_file.address()),
    );
    let env_server = from_env.address();
    let file = ws.file("where.txt", b"which server?");

    let only_file = [("XDG_CONFIG_HOME", xdg.as_str())];
    ftc_with(&ws.src(), &["send", &file], &only_file, None).success();
    assert!(
        ws.recv().join("where.txt").exists(),
        "the config file names the server"
    );

    let env_too = [
        ("XDG_CONFIG_HOME", xdg.as_str()),
        ("FTC_SERVER", env_server.as_str()),
    ];
    ftc_with(&ws.src(), &["send", &file], &env_too, None).success();
    assert!(
        from_env.dir.join(TEST_USER).join("where.txt").exists(),
        "the environment wins over the file"
    );

    ftc_with(
        &ws.src(),
        &["send", &from_arg.address(), &file],
        &env_too,
        None,
    )
    .success();
    assert!(
        from_arg.dir.join(TEST_USER).join("where.txt").exists(),
        "an explicit argument wins"
    );

    let info = ftc_with(&ws.src(), &["info", "--json"], &env_too, None);
    info.success();
    assert_eq!(ndjson(&info)[0]["server"], env_server.as_str());
}

#[test]
fn a_malformed_config_names_the_file_and_line() {
    let ws = Workspace::new();
    let xdg = write_config(&ws, "retries = 3\nserver = \"host:notaport\"\n");
    let output = ftc_with(
        &ws.src(),
        &["list"],
        &[("XDG_CONFIG_HOME", xdg.as_str())],
        None,
    );
    output.expect_code(2);
    assert!(
        output.stderr.contains("config.toml") && output.stderr.contains("line 2"),
        "{output}"
    );

    let xdg = write_config(&ws, "srever = \"typo:1\"\n");
    let output = ftc_with(
        &ws.src(),
        &["list"],
        &[("XDG_CONFIG_HOME", xdg.as_str())],
        None,
    );
    output.expect_code(2);
    assert!(output.stderr.contains("srever"), "{output}");

    let output = ftc_with(&ws.src(), &["list"], &[("FTC_SERVER", "bad host:1")], None);
    output.expect_code(2);
    assert!(output.stderr.contains("FTC_SERVER"), "{output}");
}

#[test]
fn without_any_server_the_error_says_how_to_give_one() {
    let ws = Workspace::new();
    let output = ftc(&ws.src(), &["info"]);
    output.expect_code(2);
    assert!(
        output.stderr.contains("no server given") && output.stderr.contains("FTC_SERVER"),
        "{output}"
    );
}

#[test]
fn completions_and_man_pages_are_generated() {
    let ws = Workspace::new();
    for shell in ["bash", "zsh", "fish"] {
        let output = ftc(&ws.src(), &["completions", shell]);
        output.success();
        assert!(
            output.stdout.contains("ftc") && output.stdout.contains("send"),
            "{output}"
        );
    }
    let man = ftc(&ws.src(), &["man"]);
    man.success();
    assert!(man.stdout.contains(".TH ftc"), "{man}");
    let fts_man = std::process::Command::new(bin("fts"))
        .arg("--man")
        .output()
        .unwrap();
    assert!(fts_man.status.success());
    assert!(String::from_utf8_lossy(&fts_man.stdout).contains(".TH fts"));
}
