//! The `tracing` integration: one event per cancel a context makes itself,
//! none for the contexts it reaches, and the tower layer's budget on the
//! request span.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctxtree::tower::{ContextLayer, GRPC_TIMEOUT};
use ctxtree::{Cause, Context};
use tower::{service_fn, Layer, ServiceExt};
use tracing::Level;

/// A `tracing_subscriber` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// The tests of this file run one at a time: the event level is global.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn capture(f: impl FnOnce()) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(Level::TRACE)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    out.text()
}

#[test]
fn a_cancel_emits_one_event_with_err_cause_origin_and_name() {
    let _serial = serial();
    let log = capture(|| {
        let (server, shutdown) = Context::background().named("server").with_cancel();
        let _kids: Vec<_> = (0..100).map(|_| server.with_cancel()).collect();
        shutdown.cancel_with_cause(Cause::msg("SIGTERM"));
        let (t, _h) = Context::background()
            .named("call")
            .with_timeout(Duration::ZERO);
        drop(t);
    });
    let lines: Vec<_> = log.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "one event per cancel a context made itself:\n{log}"
    );
    assert!(
        lines[0].contains("DEBUG ctxtree::cancel: context canceled"),
        "{log}"
    );
    assert!(lines[0].contains("err=canceled cause=SIGTERM"), "{log}");
    assert!(
        lines[0].contains(
            "origin=context.Background.WithCancel(\"server\") was canceled by its handle name=\"server\""
        ),
        "{log}"
    );
    assert!(lines[1].contains("err=deadline exceeded"), "{log}");
    assert!(
        lines[1].contains("passed its deadline name=\"call\""),
        "{log}"
    );
}

#[test]
fn the_level_is_configurable_and_can_be_off() {
    let _serial = serial();
    ctxtree::trace::set_cancel_level(None);
    let log = capture(|| drop(Context::background().with_cancel()));
    ctxtree::trace::set_cancel_level(Some(Level::WARN));
    let warned = capture(|| drop(Context::background().with_cancel()));
    ctxtree::trace::set_cancel_level(Some(Level::DEBUG));
    assert_eq!(log, "");
    assert!(warned.contains(" WARN ctxtree::cancel"), "{warned}");
    assert!(
        warned.contains("was canceled when its handle was dropped"),
        "{warned}"
    );
}

#[test]
fn the_tower_layer_records_the_budget_on_the_request_span() {
    let _serial = serial();
    let log = capture(|| {
        let svc = ContextLayer::new(Context::background()).layer(service_fn(
            |_req: http::Request<String>| async {
                tracing::info!("handled");
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            },
        ));
        let mut req = http::Request::new(String::new());
        req.headers_mut()
            .insert(GRPC_TIMEOUT, http::HeaderValue::from_static("250m"));
        let span = tracing::info_span!("request", ctxtree.budget_ms = tracing::field::Empty);
        let _entered = span.enter();
        futures::executor::block_on(svc.oneshot(req)).unwrap();
    });
    assert!(
        log.contains("request{ctxtree.budget_ms=250}: tracing: handled"),
        "{log}"
    );
}
