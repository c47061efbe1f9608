//! `Slow`: a read that takes its time. `get` sleeps for the resource name's number of
//! milliseconds (a host call, not a loop), then answers the resource; other verbs answer
//! at once (list: nothing; put/delete: exit 0, changing nothing).

use std::time::Duration;

pub fn abuse(verb: &str, namespace: &str, name: &str) {
    if verb != "get" {
        return;
    }
    std::thread::sleep(Duration::from_millis(name.parse().unwrap_or(1000)));
    println!(
        "{{\"apiVersion\":\"example.com/v1\",\"kind\":\"Slow\",\"metadata\":{{\"namespace\":{},\"name\":{}}},\"spec\":{{}}}}",
        crate::json_string(namespace),
        crate::json_string(name)
    );
}
