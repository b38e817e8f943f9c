//! A component of another world: not a Dispatch poller.

wit_bindgen::generate!({ path: "wit", world: "greeter" });

pub struct Greeter;

impl exports::example::greeter::greet::Guest for Greeter {
    fn hello(name: String) -> String {
        format!("hello {name}")
    }
}

export!(Greeter);
