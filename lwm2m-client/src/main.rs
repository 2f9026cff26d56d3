//! `lwm2m-client`: a simulated LwM2M device.

fn main() {
    eprintln!("lwm2m-client: the simulated device is not implemented yet (see issue 5)");
    std::process::exit(2);
}
