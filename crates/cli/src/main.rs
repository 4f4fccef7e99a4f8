fn main() {
    eprintln!("oxformer: no tasks yet");
    std::process::exit(2);
}
