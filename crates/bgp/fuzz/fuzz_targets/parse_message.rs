//! Every reader of the wire module on arbitrary bytes: framing, OPEN, UPDATE (with each
//! context), NOTIFICATION, ROUTE-REFRESH, and the VPN NLRI iterators over what UPDATE accepts.
#![no_main]

use brasa_bgp::wire::open::OpenRepr;
use brasa_bgp::wire::update::{Update, UpdateContext, VpnNlriIter};
use brasa_bgp::wire::{parse_route_refresh, Message};
use brasa_bgp::Notification;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Message::new_unchecked(data).check();
    let Some((&selector, body)) = data.split_first() else { return };
    let _ = OpenRepr::parse(body);
    let _ = Notification::parse(body);
    let _ = parse_route_refresh(body);
    let ctx = UpdateContext {
        four_octet_as: selector & 1 != 0,
        multiple_labels: selector & 2 != 0,
        internal: selector & 4 != 0,
    };
    if let Ok(update) = Update::parse(body, &ctx) {
        let _ = update.end_of_rib();
        let _ = update.as_path_numbers(&ctx);
        let _ = update.communities().count() + update.large_communities().count();
        let _ = update.extended_communities().filter_map(|c| c.route_target()).count();
        if let Some(reach) = &update.mp_reach {
            let n = VpnNlriIter::reachable(reach, &ctx).map_or(0, |it| it.count());
            std::hint::black_box(n);
        }
        if let Some(unreach) = &update.mp_unreach {
            let n = VpnNlriIter::unreachable(unreach).map_or(0, |it| it.count());
            std::hint::black_box(n);
        }
    }
});
