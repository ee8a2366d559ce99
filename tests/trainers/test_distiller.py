import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.losses import distillation_loss, soft_targets
from tfrobust.trainers import Distiller


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_distillation(teachers, student, t):
    p = np.mean([np_softmax(z / t) for z in teachers], axis=0)
    q = np_softmax(student / t)
    return t * t * np.sum(p * (np.log(p) - np.log(q)), axis=-1)


@pytest.mark.parametrize("temperature", [1.0, 2.5, 10.0])
@pytest.mark.parametrize("n_teachers", [1, 3])
def test_distillation_loss_matches_numpy_reference(temperature, n_teachers, rng):
    teachers = [rng.normal(0, 3, (16, 10)) for _ in range(n_teachers)]
    student = rng.normal(0, 3, (16, 10))
    arg = teachers[0] if n_teachers == 1 else [tf.constant(z, tf.float32) for z in teachers]
    got = distillation_loss(arg, tf.constant(student, tf.float32), temperature).numpy()
    np.testing.assert_allclose(got, np_distillation(teachers, student, temperature), rtol=2e-4, atol=1e-5)


def test_distillation_loss_is_zero_when_student_equals_teacher(rng):
    z = tf.constant(rng.normal(0, 2, (8, 5)), tf.float32)
    np.testing.assert_allclose(distillation_loss(z, z, 4.0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(soft_targets([z, z], 4.0).numpy().sum(axis=1), 1.0, rtol=1e-6)


def test_distiller_objective_matches_numpy_and_trains_with_callbacks(tiny_model, tiny_data, tmp_path):
    x, y = tiny_data[0][:64], tiny_data[1][:64]
    teachers = [tiny_model(seed=1), tiny_model(seed=2)]
    student = tiny_model(seed=0)
    distiller = Distiller(student, teacher=teachers, temperature=3.0, alpha=0.25)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"])
    batch = tf.data.Dataset.from_tensors((x, y))
    logs = distiller.evaluate(batch, return_dict=True, verbose=0)
    t_logits = [t(x).numpy().astype(np.float64) for t in teachers]
    s_logits = student(x).numpy().astype(np.float64)
    soft = np_distillation(t_logits, s_logits, 3.0).mean()
    hard = np.mean(-np.log(np_softmax(s_logits)[np.arange(64), y]))
    np.testing.assert_allclose(logs["distill_loss"], soft, rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], 0.25 * hard + 0.75 * soft, rtol=1e-4)
    # training through fit, with callbacks, reduces the objective and never touches the teachers
    teacher_before = [w.numpy().copy() for w in teachers[0].weights]
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    hist = distiller.fit(ds, epochs=3, validation_data=ds, verbose=0, callbacks=[
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=3),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "student.keras"))])
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(teacher_before, teachers[0].weights))
    reloaded = keras.models.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), student.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_distiller_learns_from_unlabelled_images_with_alpha_zero(tiny_model, tiny_data):
    x = tiny_data[0][:64]
    distiller = Distiller(tiny_model(), teacher=tiny_model(seed=1), temperature=2.0, alpha=0.0)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    hist = distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=2, verbose=0)
    assert hist.history["distill_loss"][1] < hist.history["distill_loss"][0]
    labelled_only = Distiller(tiny_model(), teacher=tiny_model(seed=1), alpha=0.5)
    labelled_only.compile(optimizer="adam")
    with pytest.raises(ValueError, match="alpha"):
        labelled_only.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=1, verbose=0)


def test_distiller_resume_with_backup_and_restore_repeats_losses(tiny_model, batches, tmp_path,
                                                                  stop_at_epoch):
    def make():
        d = Distiller(tiny_model(), teacher=tiny_model(seed=1), temperature=4.0, alpha=0.5)
        d.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        return d

    full = make().fit(batches, epochs=3, verbose=0).history["loss"]
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="simulated"):
        make().fit(batches, epochs=3, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup),
                                                            stop_at_epoch(1)])
    resumed = make().fit(batches, epochs=3, verbose=0,
                         callbacks=[keras.callbacks.BackupAndRestore(backup)]).history["loss"]
    np.testing.assert_allclose(resumed, full[1:], rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": 0.0}, "temperature"),
    ({"alpha": -0.1}, "alpha"),
    ({"alpha": 1.1}, "alpha"),
    ({"teacher": []}, "teacher"),
    ({"teacher": "model.keras"}, "teacher"),
])
def test_distiller_bad_arguments_raise(kwargs, match, tiny_model):
    kwargs = {"teacher": tiny_model(seed=1), **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        Distiller(tiny_model(), **kwargs)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(tf.zeros((1, 3)), tf.zeros((1, 3)), -1.0)
