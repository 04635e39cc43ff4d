//! `bank-bench --mix` against its own local cluster: every kind of write
//! commits, counted by kind. In a test binary of its own, so its clusters
//! do not share the cores with the timeline test's.

use serde_json::Value;
use std::process::Command;

#[test]
fn bank_bench_mix_commits_every_kind_of_write() {
    // Two mixes of three kinds each: even a slow run (tens of requests)
    // makes every kind many times; posts and voids settle the run's holds.
    for (mix, kinds) in [
        ("transfer=1,issue=1,redeem=1", ["transfer", "issue", "redeem"]),
        ("hold=1,post=1,void=1", ["hold", "post", "void"]),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_bank-bench"))
            .args(["--local", "--runs", "2x1", "--accounts", "20", "--mix", mix])
            .args(["--duration-s", "4", "--warmup-s", "0", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let by_kind = &r[0]["committed_by_kind"];
        for kind in kinds {
            assert!(
                by_kind[kind].as_u64().unwrap_or(0) > 0,
                "{mix}: no {kind} committed: {r}"
            );
        }
        let sum: u64 = by_kind.as_object().unwrap().values().filter_map(Value::as_u64).sum();
        assert_eq!(sum, r[0]["committed"].as_u64().unwrap(), "{r}");
    }

    // A mix is one operation per request; a bad one is named.
    for (args, reason) in [
        (
            &["--mix", "all", "--batch", "8"][..],
            "--mix sends one operation per request",
        ),
        (&["--mix", "swap=1"][..], "unknown kind \"swap\""),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_bank-bench"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(reason), "{args:?}: {err}");
    }
}
