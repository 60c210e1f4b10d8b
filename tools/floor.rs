//! The benchmark's floor: the least a proxy-wasm filter can do per request, answering every
//! request with a constant from its configuration (`name: value` header lines, a blank line,
//! the body). `make bench` runs it beside the real filter, so the table shows how much of the
//! gap to Envoy's `direct_response` is the cost of any Wasm filter and how much is ours.
//! Built only for the benchmark: `cargo build --release --target wasm32-wasip1 --example floor`.
#![cfg(target_os = "wasi")]

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};
use std::rc::Rc;

/// The answer, parsed once per VM.
#[derive(Default)]
struct Constant {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse(config: &[u8]) -> Constant {
    let split = config.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (
            config.get(..i).unwrap_or_default(),
            config.get(i + 2..).unwrap_or_default(),
        ),
        None => (&[][..], config),
    };
    let headers = String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Constant {
        headers,
        body: body.to_vec(),
    }
}

#[derive(Default)]
struct Root {
    answer: Rc<Constant>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.answer = Rc::new(parse(&config));
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            answer: self.answer.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    answer: Rc<Constant>,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let headers = self
            .answer
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let _ = hostcalls::send_http_response(200, headers, Some(&self.answer.body));
        Action::Pause
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::<Root>::default() });
}}
