//! The Dockerfile parser on BuildKit syntax: each rule with the value BuildKit gives.

use std::collections::BTreeSet;

use kiln_operator::dockerfile::shell::{NoEnv, process_word};
use kiln_operator::dockerfile::{Args, Command, Dockerfile, DockerfileError, Instruction};

fn parse(src: &str) -> Dockerfile {
    Dockerfile::parse("Dockerfile", src).unwrap_or_else(|e| panic!("{e}"))
}

fn ins(df: &Dockerfile, stage: usize, i: usize) -> &Instruction {
    &df.stages[stage].instructions[i]
}

#[test]
fn continuation_lines_join_and_keep_the_original_text() {
    let df =
        parse("FROM alpine\nRUN apt-get update && \\\n    apt-get install -y \\\n      curl\n");
    let run = ins(&df, 0, 0);
    assert_eq!(
        run.original,
        "RUN apt-get update &&     apt-get install -y       curl"
    );
    assert_eq!((run.line, run.end_line), (2, 4));
    assert!(
        matches!(&run.args, Args::Run(r) if r.command == Command::Shell("apt-get update &&     apt-get install -y       curl".into()))
    );
}

#[test]
fn escape_directive_switches_to_backtick() {
    let df = parse(
        "# escape=`\nFROM mcr.microsoft.com/windows\nCOPY C:\\src\\ C:\\dst\\\nRUN dir `\n  c:\\\n",
    );
    assert_eq!(df.escape, '`');
    let Args::Copy(c) = &ins(&df, 0, 0).args else {
        panic!()
    };
    assert_eq!(c.sources, ["C:\\src\\"]);
    assert_eq!(c.dest, "C:\\dst\\");
    assert_eq!(ins(&df, 0, 1).original, "RUN dir   c:\\");
}

#[test]
fn syntax_directive_is_recorded_and_not_a_comment_instruction() {
    let df = parse("# syntax=docker/dockerfile:1.7\n# check=skip=all\nFROM a\n");
    assert_eq!(
        df.directives[0],
        ("syntax".to_string(), "docker/dockerfile:1.7".to_string())
    );
    assert_eq!(df.directives.len(), 2);
}

#[test]
fn comments_anywhere_are_ignored() {
    let df = parse("# top\n\n# another\nFROM a\n");
    assert_eq!(df.stages.len(), 1);
    assert!(df.directives.is_empty());
    let df = parse("FROM a\n   # indented comment\nRUN x\n");
    assert_eq!(df.stages[0].instructions.len(), 1);
    // A `#` inside an instruction is just text.
    let df = parse("FROM a\nRUN echo # kept\n");
    assert_eq!(ins(&df, 0, 0).original, "RUN echo # kept");
}

#[test]
fn json_and_shell_forms() {
    let df = parse(
        "FROM a\nCMD [\"node\", \"server.js\"]\nENTRYPOINT exec node\nRUN [\"sh\", \"-c\", \"echo hi\"]\nCMD [not json\nSHELL [\"/bin/bash\", \"-c\"]\n",
    );
    assert_eq!(
        ins(&df, 0, 0).args,
        Args::Cmd(Command::Exec(vec!["node".into(), "server.js".into()]))
    );
    assert_eq!(
        ins(&df, 0, 1).args,
        Args::Entrypoint(Command::Shell("exec node".into()))
    );
    assert!(
        matches!(&ins(&df, 0, 2).args, Args::Run(r) if r.command == Command::Exec(vec!["sh".into(), "-c".into(), "echo hi".into()]))
    );
    assert_eq!(
        ins(&df, 0, 3).args,
        Args::Cmd(Command::Shell("[not json".into()))
    );
    assert_eq!(
        ins(&df, 0, 4).args,
        Args::Shell(vec!["/bin/bash".into(), "-c".into()])
    );
    let e = Dockerfile::parse("Dockerfile", "FROM a\nCMD [\"a\", 1]\n").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn arg_and_env_forms() {
    let df = parse(
        "ARG A=1 B\nFROM a\nENV K1=v1 K2=\"two words\" K3=x\\ y\nENV LEGACY value with  spaces\nLABEL a=b \"c d\"=e\n",
    );
    let Args::Arg(kvs) = &df.meta_args[0].args else {
        panic!()
    };
    assert_eq!(
        (kvs[0].key.as_str(), kvs[0].value.as_deref()),
        ("A", Some("1"))
    );
    assert_eq!((kvs[1].key.as_str(), kvs[1].value.as_deref()), ("B", None));
    let Args::Env(env) = &ins(&df, 0, 0).args else {
        panic!()
    };
    assert_eq!(
        env[1],
        ("K2".to_string(), "\"two words\"".to_string()),
        "values stay unprocessed"
    );
    assert_eq!(process_word(&env[1].1, &NoEnv, '\\').unwrap(), "two words");
    assert_eq!(process_word(&env[2].1, &NoEnv, '\\').unwrap(), "x y");
    assert_eq!(
        ins(&df, 0, 1).args,
        Args::Env(vec![("LEGACY".into(), "value with  spaces".into())])
    );
    let Args::Label(l) = &ins(&df, 0, 2).args else {
        panic!()
    };
    assert_eq!(l[1].0, "\"c d\"");
    let e = Dockerfile::parse("Dockerfile", "FROM a\nENV A=1 B\n").unwrap_err();
    assert!(
        matches!(e, DockerfileError::Syntax { line: 2, .. }),
        "{e:?}"
    );
}

#[test]
fn copy_and_add_flags() {
    let df = parse(
        "FROM a AS b\nFROM a\nCOPY --from=b --chown=1000:1000 --chmod=0755 --link /out /bin/x\nADD --checksum=sha256:abc https://example.org/f.tgz /tmp/\nCOPY [\"a b\", \"/dst/\"]\nCOPY --parents --exclude=*.md --exclude=*.txt src/ /src\n",
    );
    let Args::Copy(c) = &ins(&df, 1, 0).args else {
        panic!()
    };
    assert_eq!(c.from.as_deref(), Some("b"));
    assert_eq!(c.chown.as_deref(), Some("1000:1000"));
    assert_eq!(c.chmod.as_deref(), Some("0755"));
    assert!(c.link);
    assert_eq!(
        (c.sources.clone(), c.dest.as_str()),
        (vec!["/out".to_string()], "/bin/x")
    );
    let Args::Add(a) = &ins(&df, 1, 1).args else {
        panic!()
    };
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    let Args::Copy(j) = &ins(&df, 1, 2).args else {
        panic!()
    };
    assert_eq!(j.sources, ["a b"]);
    let Args::Copy(p) = &ins(&df, 1, 3).args else {
        panic!()
    };
    assert!(p.parents);
    assert_eq!(p.exclude, ["*.md", "*.txt"]);
    for bad in [
        "FROM a\nCOPY onlyone\n",
        "FROM a\nCOPY --bogus=1 a b\n",
        "FROM a\nCOPY --link=maybe a b\n",
    ] {
        let e = Dockerfile::parse("Dockerfile", bad).unwrap_err();
        assert!(
            matches!(e, DockerfileError::Syntax { line: 2, .. }),
            "{bad:?}: {e:?}"
        );
    }
}

#[test]
fn run_mounts_network_and_security() {
    let df = parse(
        "FROM a AS deps\nFROM a\nRUN --mount=type=cache,target=/root/.cache,id=go,sharing=locked --mount=type=bind,from=deps,source=/go,target=/go,ro --mount=type=secret,id=tok,target=/run/secrets/tok --mount=type=ssh --network=none --security=insecure go build\n",
    );
    let Args::Run(r) = &ins(&df, 1, 0).args else {
        panic!()
    };
    assert_eq!(r.mounts.len(), 4);
    assert_eq!(r.mounts[0].mount_type(), "cache");
    assert_eq!(r.mounts[0].target(), Some("/root/.cache"));
    assert_eq!(r.mounts[1].from(), Some("deps"));
    assert_eq!(r.mounts[1].source(), Some("/go"));
    assert_eq!(r.mounts[2].mount_type(), "secret");
    assert_eq!(r.mounts[3].mount_type(), "ssh");
    assert_eq!(r.network.as_deref(), Some("none"));
    assert_eq!(r.security.as_deref(), Some("insecure"));
    assert_eq!(r.command, Command::Shell("go build".into()));
    let e = Dockerfile::parse(
        "Dockerfile",
        "FROM a\nRUN --mount=type=nfs,target=/x true\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn heredocs_for_run_and_copy() {
    let df = parse(
        "FROM a\nRUN <<EOF bash\nset -e\necho $HOME\nEOF\nCOPY <<-\"CONF\" /etc/app.conf\n\tkey=value\n\tCONF\nRUN cat <<A > /a && cat <<B > /b\nfirst\nA\nsecond\nB\nCMD x\n",
    );
    let run = ins(&df, 0, 0);
    assert_eq!(run.heredocs[0].content, "set -e\necho $HOME\n");
    assert!(run.heredocs[0].expand);
    let copy = ins(&df, 0, 1);
    assert_eq!(copy.heredocs[0].content, "key=value\n");
    assert!(!copy.heredocs[0].expand);
    let Args::Copy(c) = &copy.args else { panic!() };
    assert_eq!(
        (c.sources.clone(), c.dest.as_str()),
        (vec!["<<-\"CONF\"".to_string()], "/etc/app.conf")
    );
    assert_eq!(ins(&df, 0, 2).heredocs.len(), 2);
    assert_eq!(df.stages[0].instructions.len(), 4);
}

#[test]
fn multi_stage_platform_and_dependencies() {
    let df = parse(
        "ARG GO=1.22\nFROM --platform=$BUILDPLATFORM golang:${GO} AS Base\nFROM base AS deps\nRUN --mount=type=bind,from=0,target=/x true\nFROM alpine AS tools\nFROM scratch AS build\nCOPY --from=deps /a /a\nCOPY --from=2 /t /t\nCOPY --from=nginx:latest /etc/nginx /etc/nginx\nFROM scratch\nCOPY --from=build / /\n",
    );
    assert_eq!(
        df.stages[0].name.as_deref(),
        Some("base"),
        "names are lower-cased"
    );
    assert_eq!(df.stages[0].platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(df.stage_dependencies(1), BTreeSet::from([0]));
    assert_eq!(df.stage_dependencies(3), BTreeSet::from([0, 1, 2]));
    assert_eq!(df.stage_dependencies(4), BTreeSet::from([0, 1, 2, 3]));
    assert_eq!(df.stage_dependencies(2), BTreeSet::new());
    assert_eq!(df.target_index(Some("tools")).unwrap(), 2);
    assert_eq!(df.target_index(None).unwrap(), 4);
    assert_eq!(df.stage_name(4), None);
    match df.target_index(Some("Tools")).unwrap_err() {
        DockerfileError::UnknownTarget { target, stages, .. } => {
            assert_eq!(target, "Tools");
            assert_eq!(stages, ["base", "deps", "tools", "build", "#4"]);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn structural_errors_name_file_and_line() {
    let cases: [(&str, &str); 7] = [
        ("RUN x\nFROM a\n", "line 1"),
        ("FROM a\nBOGUS x\n", "line 2"),
        ("FROM a b\n", "line 1"),
        ("FROM a AS 1st\n", "line 1"),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "line 2"),
        ("FROM a\nHEALTHCHECK --interval=5s\n", "line 2"),
        ("# only a comment\n", "no FROM"),
    ];
    for (src, want) in cases {
        let e = Dockerfile::parse("svc/Dockerfile", src).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("svc/Dockerfile") && msg.contains(want),
            "{src:?}: {msg}"
        );
    }
}

#[test]
fn instructions_are_case_insensitive() {
    let df = parse("from alpine as b\nrun echo\ncopy a b\n");
    assert_eq!(df.stages[0].name.as_deref(), Some("b"));
    assert_eq!(ins(&df, 0, 0).keyword, "RUN");
    assert_eq!(ins(&df, 0, 1).stage_name(), "copy");
    // The staged stage name is the keyword as written (werf v2.62.1, BuildKit's node.Value).
    let mixed = parse("FROM alpine\nExpose 80\nRUN echo\n");
    assert_eq!(ins(&mixed, 0, 0).stage_name(), "Expose");
    assert_eq!(ins(&mixed, 0, 1).stage_name(), "RUN");
}

#[test]
fn onbuild_and_healthcheck() {
    let df = parse(
        "FROM a\nONBUILD COPY . /src\nHEALTHCHECK --interval=30s --retries=3 CMD curl -f http://localhost/\nHEALTHCHECK NONE\n",
    );
    assert_eq!(ins(&df, 0, 0).args, Args::Onbuild("COPY . /src".into()));
    let Args::Healthcheck(Some(h)) = &ins(&df, 0, 1).args else {
        panic!()
    };
    assert_eq!(
        (h.interval.as_deref(), h.retries.as_deref()),
        (Some("30s"), Some("3"))
    );
    assert_eq!(
        h.command,
        Command::Shell("curl -f http://localhost/".into())
    );
    assert_eq!(ins(&df, 0, 2).args, Args::Healthcheck(None));
}

#[test]
fn context_sources_of_the_target_chain() {
    let df = parse(
        "FROM a AS deps\nCOPY go.mod go.sum ./\nFROM a AS unused\nCOPY unused.txt /\nFROM deps\nCOPY --from=deps /x /x\nADD src/ /src\nCOPY <<EOF /etc/conf\nk=v\nEOF\n",
    );
    let got: Vec<(usize, Vec<&str>)> = df
        .context_sources(2)
        .into_iter()
        .map(|(ins, s)| (ins.line, s))
        .collect();
    assert_eq!(
        got,
        [
            (2, vec!["go.mod", "go.sum"]),
            (7, vec!["src/"]),
            (8, vec![])
        ]
    );
}
