#[test]
fn libtorch_loads() {
    let t = flax::tch::Tensor::from_slice(&[1.0f32, 2.0]);
    assert_eq!(t.sum(flax::tch::Kind::Float).double_value(&[]), 3.0);
}
