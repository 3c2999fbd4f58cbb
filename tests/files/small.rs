//! The small operations coding agents use most: stat, list, make, remove,
//! move, read, write, edit, find and grep.

use super::*;

async fn small_operations_behave_as_documented(provider: Provider) {
    let (server, id, mut files) = setup(provider).await;
    let req = |path: &str| pb::ReadFileRequest {
        sandbox_id: id.clone(),
        path: path.into(),
        ..Default::default()
    };

    // Write (relative paths resolve against the workdir), and commands see it.
    let lines: String = (1..=10).map(|n| format!("line{n}\n")).collect();
    let info = write(&mut files, &id, "notes/ten.txt", lines.as_bytes()).await;
    assert_eq!(info.path, "/workspace/notes/ten.txt");
    assert_eq!(info.size, lines.len() as i64);
    assert_eq!(server.shell(&id, "cat notes/ten.txt").await, lines);
    code_and_says(
        files
            .write_file(pb::WriteFileRequest {
                sandbox_id: id.clone(),
                path: "notes/ten.txt".into(),
                content: b"x".to_vec(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "/workspace/notes/ten.txt",
    );
    // A write makes the folders its path needs, unless told not to.
    let nested = files
        .write_file(pb::WriteFileRequest {
            sandbox_id: id.clone(),
            path: "made/on/the/way.txt".into(),
            content: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(nested.path, "/workspace/made/on/the/way.txt");
    assert_eq!(server.shell(&id, "cat made/on/the/way.txt").await, "x");
    code_and_says(
        files
            .write_file(pb::WriteFileRequest {
                sandbox_id: id.clone(),
                path: "missing/dir/file".into(),
                content: b"x".to_vec(),
                create_parents: Some(false),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "/workspace/missing/dir: no such directory (create_parents is false",
    );

    // Read by lines: offset is the first line, limit the most lines.
    let part = read(
        &mut files,
        pb::ReadFileRequest {
            offset: 3,
            limit: 2,
            ..req("notes/ten.txt")
        },
    )
    .await;
    assert_eq!(part.content, b"line3\nline4\n");
    assert_eq!((part.first_line, part.lines, part.truncated), (3, 2, true));
    let tail = read(
        &mut files,
        pb::ReadFileRequest {
            offset: 9,
            ..req("notes/ten.txt")
        },
    )
    .await;
    assert_eq!(tail.content, b"line9\nline10\n");
    assert!(!tail.truncated);
    let capped = read(
        &mut files,
        pb::ReadFileRequest {
            max_bytes: 14,
            ..req("notes/ten.txt")
        },
    )
    .await;
    assert_eq!(capped.content, b"line1\nline2\n", "cut at a line's end");
    assert!(capped.truncated);
    // ...and by bytes.
    let bytes = read(
        &mut files,
        pb::ReadFileRequest {
            byte_offset: 6,
            byte_length: 5,
            ..req("notes/ten.txt")
        },
    )
    .await;
    assert_eq!(bytes.content, b"line2");
    assert!(bytes.truncated);
    assert_eq!(bytes.size, lines.len() as i64);

    // Edit: unique, absent, ambiguous, replace-all.
    write(
        &mut files,
        &id,
        "src/main.rs",
        b"fn main() {\n    run(1);\n    run(2);\n}\n",
    )
    .await;
    let edit = |old: &str, new: &str, all: bool| pb::EditFileRequest {
        sandbox_id: id.clone(),
        path: "src/main.rs".into(),
        old_text: old.into(),
        new_text: new.into(),
        replace_all: all,
    };
    let edited = files
        .edit_file(edit("run(1)", "start(1)", false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.replacements, 1);
    code_and_says(
        files.edit_file(edit("absent()", "x", false)).await,
        Code::FailedPrecondition,
        "does not appear",
    );
    write(&mut files, &id, "src/twice.rs", b"a; a;\n").await;
    code_and_says(
        files
            .edit_file(pb::EditFileRequest {
                path: "src/twice.rs".into(),
                ..edit("a;", "b;", false)
            })
            .await,
        Code::FailedPrecondition,
        "2 times",
    );
    let all = files
        .edit_file(pb::EditFileRequest {
            path: "src/twice.rs".into(),
            ..edit("a;", "b;", true)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.replacements, 2);
    assert_eq!(
        read(&mut files, req("src/main.rs")).await.content,
        b"fn main() {\n    start(1);\n    run(2);\n}\n"
    );
    assert_eq!(
        read(&mut files, req("src/twice.rs")).await.content,
        b"b; b;\n"
    );

    // List, find, grep.
    write(&mut files, &id, "src/lib/deep.rs", b"pub fn Deep() {}\n").await;
    write(&mut files, &id, "src/blob.bin", b"fn main\0binary").await;
    let listed = files
        .list_dir(pb::ListDirRequest {
            sandbox_id: id.clone(),
            path: "src".into(),
            depth: 2,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "/workspace/src/blob.bin",
            "/workspace/src/lib",
            "/workspace/src/lib/deep.rs",
            "/workspace/src/main.rs",
            "/workspace/src/twice.rs"
        ]
    );
    assert!(!listed.truncated);
    let shallow = files
        .list_dir(pb::ListDirRequest {
            sandbox_id: id.clone(),
            path: "src".into(),
            depth: 1,
            limit: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shallow.entries.len(), 2);
    assert!(shallow.truncated);
    let found = files
        .find_files(pb::FindFilesRequest {
            sandbox_id: id.clone(),
            path: "src".into(),
            pattern: "**/*.rs".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        found.paths,
        [
            "/workspace/src/lib/deep.rs",
            "/workspace/src/main.rs",
            "/workspace/src/twice.rs"
        ]
    );
    let top = files
        .find_files(pb::FindFilesRequest {
            sandbox_id: id.clone(),
            path: "src".into(),
            pattern: "*.rs".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(top.paths.len(), 2, "{:?}", top.paths);
    let grep = files
        .grep(pb::GrepRequest {
            sandbox_id: id.clone(),
            path: String::new(),
            pattern: "fn (main|deep)".into(),
            glob: String::new(),
            ignore_case: true,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let hits: Vec<(String, i64)> = grep
        .matches
        .iter()
        .map(|m| (m.path.clone(), m.line_number))
        .collect();
    assert_eq!(
        hits,
        [
            ("/workspace/src/lib/deep.rs".to_owned(), 1),
            ("/workspace/src/main.rs".to_owned(), 1)
        ]
    );
    assert_eq!(grep.binary_files_skipped, 1);
    let limited = files
        .grep(pb::GrepRequest {
            sandbox_id: id.clone(),
            path: "src".into(),
            pattern: "[a-z]".into(),
            glob: "*.rs".into(),
            ignore_case: false,
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(limited.matches.len(), 1);
    assert!(limited.truncated);

    // Stat, make, move, remove, and their errors.
    let stat = |path: &str| pb::StatRequest {
        sandbox_id: id.clone(),
        path: path.into(),
    };
    let dir = files
        .stat(stat("src"))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(dir.r#type, pb::FileType::Directory as i32);
    code_and_says(
        files.stat(stat("nothing/here")).await,
        Code::NotFound,
        "/workspace/nothing/here",
    );
    code_and_says(
        files.read_file(req("src")).await,
        Code::FailedPrecondition,
        "/workspace/src",
    );
    let made = files
        .make_dir(pb::MakeDirRequest {
            sandbox_id: id.clone(),
            path: "a/b/c".into(),
            parents: true,
            mode: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(made.mode, 0o755);
    code_and_says(
        files
            .make_dir(pb::MakeDirRequest {
                sandbox_id: id.clone(),
                path: "a/b/c".into(),
                parents: false,
                mode: 0,
            })
            .await,
        Code::AlreadyExists,
        "/workspace/a/b/c",
    );
    let mv = |source: &str, destination: &str, overwrite: bool| pb::MoveRequest {
        sandbox_id: id.clone(),
        source: source.into(),
        destination: destination.into(),
        overwrite,
    };
    code_and_says(
        files.r#move(mv("src/twice.rs", "src/main.rs", false)).await,
        Code::AlreadyExists,
        "/workspace/src/main.rs",
    );
    let moved = files
        .r#move(mv("src/twice.rs", "a/b/c/twice.rs", false))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(moved.path, "/workspace/a/b/c/twice.rs");
    let remove = |path: &str, recursive: bool| pb::RemoveRequest {
        sandbox_id: id.clone(),
        path: path.into(),
        recursive,
    };
    code_and_says(
        files.remove(remove("a", false)).await,
        Code::FailedPrecondition,
        "not empty",
    );
    files.remove(remove("a", true)).await.unwrap();
    code_and_says(files.stat(stat("a")).await, Code::NotFound, "/workspace/a");
    assert_eq!(
        server.shell(&id, "ls a 2>/dev/null || echo gone").await,
        "gone\n"
    );
}

on_every_provider!(small_operations_behave_as_documented,);
