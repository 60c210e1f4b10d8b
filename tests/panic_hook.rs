//! The panic hook logs one line with the message and location before the VM dies. In its own
//! test binary: the hook is process-wide.

use kube_oidc_discovery::startup::set_panic_hook;
use std::sync::Mutex;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[test]
fn a_panic_is_logged_with_its_message_and_location() {
    set_panic_hook(|line| LINES.lock().unwrap().push(line.to_string()));
    let caught = std::panic::catch_unwind(|| panic!("boom {}", 42));
    let _ = std::panic::take_hook();
    assert!(caught.is_err());
    let lines = LINES.lock().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        line.starts_with("kube-oidc-discovery: panicked at "),
        "{line}"
    );
    assert!(line.contains("tests/panic_hook.rs:"), "{line}");
    assert!(line.contains("boom 42"), "{line}");
    assert!(line.ends_with("; the VM stops"), "{line}");
}
