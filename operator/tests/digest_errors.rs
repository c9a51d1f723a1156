//! Bad input: each error names the image, the file and the line where one applies.

mod digest_support;

use digest_support::{Img, Repo};
use kiln_operator::digest::DigestError;
use kiln_operator::dockerfile::DockerfileError;
use kiln_operator::source::{GitTree, SourceError};

fn err_of(dockerfile: &str, files: &[(&str, &str)], img: Img) -> DigestError {
    let r = Repo::new();
    r.write("Dockerfile", dockerfile);
    for (p, c) in files {
        r.write(p, c);
    }
    r.commit("init");
    img.stages(&r.tree(None)).expect_err("must fail")
}

#[test]
fn missing_dockerfile_names_the_path_and_the_commit() {
    let r = Repo::new();
    r.write("README.md", "x\n");
    let commit = r.commit("init");
    let img = Img {
        context: "svc".into(),
        ..Img::default()
    };
    let e = img.stages(&r.tree(None)).unwrap_err();
    assert!(
        matches!(&e, DigestError::DockerfileNotFound { path, .. } if path == "svc/Dockerfile"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("image app") && msg.contains("svc/Dockerfile") && msg.contains(&commit),
        "{msg}"
    );
}

#[test]
fn dockerfile_syntax_error_names_file_and_line() {
    let e = err_of("FROM alpine\nRUN echo ok\nENV\n", &[], Img::default());
    match &e {
        DigestError::Dockerfile {
            source: DockerfileError::Syntax { file, line, .. },
            ..
        } => assert_eq!((file.as_str(), *line), ("Dockerfile", 3)),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("Dockerfile, line 3"), "{e}");
}

#[test]
fn unknown_instruction_names_file_line_and_keyword() {
    let e = err_of("FROM alpine\n\nFOO bar\n", &[], Img::default());
    let msg = e.to_string();
    assert!(msg.contains("line 3") && msg.contains("FOO"), "{msg}");
}

#[test]
fn unknown_target_names_it_and_the_stages() {
    let img = Img {
        target: Some("nope".into()),
        ..Img::default()
    };
    let e = err_of("FROM alpine AS build\nFROM alpine AS final\n", &[], img);
    assert!(
        matches!(
            &e,
            DigestError::Dockerfile {
                source: DockerfileError::UnknownTarget { .. },
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("\"nope\"") && msg.contains("build, final") && msg.contains("Dockerfile"),
        "{msg}"
    );
}

#[test]
fn copy_source_matching_nothing_names_source_context_file_and_line() {
    let e = err_of(
        "FROM alpine\nCOPY app.txt /\nCOPY missing/*.conf /etc/\n",
        &[("app.txt", "1\n")],
        Img::default(),
    );
    match &e {
        DigestError::CopySourceNotFound {
            file,
            line,
            source_path,
            context,
            ..
        } => {
            assert_eq!(
                (file.as_str(), *line, source_path.as_str(), context.as_str()),
                ("Dockerfile", 3, "missing/*.conf", ".")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn copy_of_an_ignored_file_matches_nothing() {
    let e = err_of(
        "FROM alpine\nCOPY secret.env /\n",
        &[("secret.env", "x\n"), (".dockerignore", "*.env\n")],
        Img::default(),
    );
    assert!(
        matches!(e, DigestError::CopySourceNotFound { line: 2, .. }),
        "{e:?}"
    );
}

#[test]
fn copy_from_a_stage_is_not_looked_up_in_the_context() {
    let r = Repo::new();
    r.write(
        "Dockerfile",
        "FROM alpine AS b\nRUN mkdir /out\nFROM alpine\nCOPY --from=b /out /out\n",
    );
    r.commit("init");
    assert!(Img::default().stages(&r.tree(None)).is_ok());
}

#[test]
fn empty_base_image_is_an_error_with_the_line() {
    let e = err_of("ARG BASE\nFROM $BASE\n", &[], Img::default());
    assert!(
        matches!(e, DigestError::InvalidBaseImage { line: 2, .. }),
        "{e:?}"
    );
}

#[test]
fn invalid_platform_is_named() {
    let img = Img {
        platform: "amd64".into(),
        ..Img::default()
    };
    let e = err_of("FROM alpine\n", &[], img);
    assert!(e.to_string().contains("invalid platform \"amd64\""), "{e}");
}

#[test]
fn bad_dockerignore_names_its_file_and_line() {
    let e = err_of(
        "FROM alpine\nCOPY . /\n",
        &[(".dockerignore", "ok\n[bad\n")],
        Img::default(),
    );
    let msg = e.to_string();
    assert!(msg.contains(".dockerignore, line 2"), "{msg}");
}

#[test]
fn not_a_repository_and_unknown_revision_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = GitTree::open(dir.path(), None).unwrap_err();
    assert!(matches!(e, SourceError::NotARepository { .. }), "{e:?}");
    assert!(e.to_string().contains("is not a git repository"), "{e}");

    let r = Repo::new();
    r.write("a", "1\n");
    r.commit("init");
    let e = GitTree::open(r.path(), Some("no-such-branch")).unwrap_err();
    assert!(
        e.to_string().contains("\"no-such-branch\" does not exist"),
        "{e}"
    );
    let e = GitTree::open(r.path(), Some("deadbeefdeadbeef")).unwrap_err();
    assert!(matches!(e, SourceError::RevisionNotFound { .. }), "{e:?}");
}

#[test]
fn read_file_and_list_entries() {
    let r = Repo::new();
    r.write("a/b/c.txt", "c\n");
    r.write("a/d.txt", "d\n");
    r.commit("init");
    let t = r.tree(None);
    assert_eq!(t.read_file("a/b/c.txt").unwrap().unwrap(), b"c\n");
    assert_eq!(t.read_file("./a/d.txt").unwrap().unwrap(), b"d\n");
    assert!(t.read_file("a/none").unwrap().is_none());
    assert!(matches!(
        t.read_file("a/b"),
        Err(SourceError::NotAFile { .. })
    ));
    let paths: Vec<String> = t
        .list_entries("a")
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, ["a/b/c.txt", "a/d.txt"]);
    assert!(t.list_entries("zzz").unwrap().is_empty());
}
