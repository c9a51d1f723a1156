//! Parser tests: each rule with the value BuildKit gives.

use super::*;

fn parse(src: &str) -> Dockerfile {
    Dockerfile::parse("Dockerfile", src).unwrap()
}

#[test]
fn stages_names_and_meta_args() {
    let d = parse(
        "ARG BASE=alpine\nFROM ${BASE} AS Build\nRUN make\nFROM --platform=$BUILDPLATFORM scratch\nCOPY --from=build /out /\n",
    );
    assert_eq!(d.meta_args.len(), 1);
    assert_eq!(d.stages.len(), 2);
    assert_eq!(d.stages[0].name.as_deref(), Some("build"));
    assert_eq!(d.stages[0].base_name, "${BASE}");
    assert_eq!(d.stages[1].platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(d.target_index(None).unwrap(), 1);
    assert_eq!(d.target_index(Some("build")).unwrap(), 0);
    assert_eq!(d.stage_name(0), Some("build"));
    assert_eq!(d.stage_name(1), None);
}
