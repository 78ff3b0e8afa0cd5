use routemq::prelude::*;

#[job]
struct Resize(u32, #[serde(default)] String);

#[job]
struct Ping;

#[job]
struct WithCache {
    id: u64,
    #[serde(skip)]
    cache: Vec<u8>,
}

macro_rules! noop_job {
    ($($t:ty),*) => {$(
        impl Job for $t {
            async fn handle(&mut self, _ctx: &JobContext) -> Result<(), JobError> {
                Ok(())
            }
        }
    )*};
}
noop_job!(Resize, Ping, WithCache);

fn main() {
    let json = routemq::__private::serde_json::to_string(&Resize(7, "x".into())).unwrap();
    assert_eq!(json, r#"{"0":7,"1":"x"}"#);
    let back: Resize = routemq::__private::serde_json::from_str(r#"{"0":9}"#).unwrap();
    assert_eq!((back.0, back.1.as_str()), (9, ""));
    assert_eq!(routemq::__private::serde_json::to_string(&Ping).unwrap(), "{}");
    let _: Ping = routemq::__private::serde_json::from_str("{}").unwrap();
    let cached = WithCache { id: 1, cache: vec![1, 2] };
    assert_eq!(routemq::__private::serde_json::to_string(&cached).unwrap(), r#"{"id":1}"#);
    assert!(cached.cache.len() == 2);
}
