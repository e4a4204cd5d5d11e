//! Tests of task logs: reading, following across rotation, Docker's selection, publishing.

use super::*;
use std::io::Write;

fn entry(time: &str, log: &str) -> String {
    serde_json::to_string(&LogEntry {
        time: time.into(),
        stream: Stream::Stdout,
        log: log.into(),
    })
    .unwrap()
        + "\n"
}

#[test]
fn a_log_is_read_in_complete_lines_from_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("container.log");
    let mut f = LogFile::new(p.clone());
    assert!(f.read_new().unwrap().is_none());
    assert!(!f.seen);
    let mut w = std::fs::File::create(&p).unwrap();
    let a = entry("2026-12-03T00:00:01.000000000Z", "a\n");
    let b = entry("2026-12-03T00:00:02.000000000Z", "b\n");
    w.write_all(a.as_bytes()).unwrap();
    // Half of the next line: not returned until it is complete.
    w.write_all(&b.as_bytes()[..10]).unwrap();
    let got = f.read_new().unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].log, "a\n");
    w.write_all(&b.as_bytes()[10..]).unwrap();
    let got = f.read_new().unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].log, "b\n");
    assert!(f.read_new().unwrap().unwrap().is_empty());
    std::fs::remove_file(&p).unwrap();
    assert!(f.read_new().unwrap().is_none());
    assert!(f.seen);
}

#[test]
fn a_followed_log_loses_nothing_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("container.log");
    let old = dir.path().join("container.log.2");
    let one = dir.path().join("container.log.1");
    // History: .2 then .1 then the current file, read oldest first on the first read.
    std::fs::write(&old, entry("2026-12-03T00:00:01.000000000Z", "a\n")).unwrap();
    std::fs::write(&one, entry("2026-12-03T00:00:02.000000000Z", "b\n")).unwrap();
    std::fs::write(&p, entry("2026-12-03T00:00:03.000000000Z", "c\n")).unwrap();
    let mut f = LogFile::new(p.clone());
    let logs = |v: Vec<LogEntry>| v.into_iter().map(|e| e.log).collect::<String>();
    assert_eq!(logs(f.read_new().unwrap().unwrap()), "a\nb\nc\n");
    // A line lands, then the file rotates (as the init does) before the next read, and
    // another line goes to the new file.
    let mut w = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
    w.write_all(entry("2026-12-03T00:00:04.000000000Z", "d\n").as_bytes())
        .unwrap();
    std::fs::rename(&one, &old).unwrap();
    std::fs::rename(&p, &one).unwrap();
    std::fs::write(
        &p,
        entry("2026-12-03T00:00:05.000000000Z", "e, a longer line\n"),
    )
    .unwrap();
    assert_eq!(
        logs(f.read_new().unwrap().unwrap()),
        "d\ne, a longer line\n"
    );
    // Emptied in place (max-file=1): reading restarts at the top.
    std::fs::write(&p, entry("2026-12-03T00:00:06.000000000Z", "f\n")).unwrap();
    assert_eq!(logs(f.read_new().unwrap().unwrap()), "f\n");
}

#[test]
fn since_until_and_tail_select_like_docker() {
    let v: Vec<LogEntry> = (1..=5)
        .map(|i| LogEntry {
            time: format!("2026-12-03T00:00:0{i}.000000000Z"),
            stream: Stream::Stdout,
            log: format!("{i}\n"),
        })
        .collect();
    let o = |since: &str, until: &str, tail: i64| LogOptions {
        since: since.into(),
        until: until.into(),
        tail,
        follow: false,
    };
    let logs = |v: Vec<LogEntry>| v.into_iter().map(|e| e.log).collect::<String>();
    assert_eq!(
        logs(select(v.clone(), &o("", "", -1), true)),
        "1\n2\n3\n4\n5\n"
    );
    assert_eq!(logs(select(v.clone(), &o("", "", 2), true)), "4\n5\n");
    assert_eq!(logs(select(v.clone(), &o("", "", 0), true)), "");
    // Tail applies to what was there, not to lines that come while following.
    assert_eq!(logs(select(v.clone(), &o("", "", 0), false)).len(), 10);
    assert_eq!(
        logs(select(
            v.clone(),
            &o(
                "2026-12-03T00:00:02.000000000Z",
                "2026-12-03T00:00:04.000000000Z",
                -1
            ),
            true
        )),
        "2\n3\n4\n"
    );
}

#[test]
fn lines_are_published_in_bounded_messages() {
    let v: Vec<LogLine> = (0..300).map(|_| LogLine::default()).collect();
    let c = chunks(v);
    assert_eq!(
        c.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![128, 128, 44]
    );
}
