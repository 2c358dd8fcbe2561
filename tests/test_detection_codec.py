"""The detection task's wire format: image cells shared with the image task (tasks/image_codec.py), box answers."""
import base64
import io
import json

import numpy as np
import pytest

from modeldojo.tasks.base import Prediction
from modeldojo.tasks.codec import Signature
from modeldojo.tasks.detection.codec import DetectionCodec

CAT = {"class": "cat", "score": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}
DOG = {"class": "dog", "score": 0.4, "box": [5, 6, 7, 8]}


def codec():
    return DetectionCodec(Signature("boxes", "detection", "detection", ["cat", "dog"], ["image"]))


def prediction():
    return Prediction(values=np.array([json.dumps([CAT, DOG]), json.dumps([])], dtype=object))


def png(size=(5, 3), color=(200, 10, 10)):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_decode_from_base64_a_data_url_and_raw_bytes():
    encoded = base64.b64encode(png()).decode()
    records = codec().records([{"image": encoded}, "data:image/png;base64," + encoded])
    assert [record["image"].size for record in records] == [(5, 3), (5, 3)]
    assert records[1]["image"].mode == "RGB" and records[1]["image"].getpixel((0, 0)) == (200, 10, 10)
    assert codec().cell("image", png((2, 2)), "inputs[0].image", {"pixels": 0}).size == (2, 2)  # BYTES tensor
    with pytest.raises(ValueError, match=r"inputs\[0\].image: not valid base64"):
        codec().records(["not base64!"])
    assert codec().tensor_datatypes("image") == ("BYTES",) and codec().uploads and codec().heavy


def test_the_image_task_keeps_its_names():
    from modeldojo.tasks import image_codec
    from modeldojo.tasks.image.codec import ImageCodec, _EXAMPLE_PNG, decode_image, decode_image_bytes

    assert ImageCodec is image_codec.ImageCodec and issubclass(DetectionCodec, ImageCodec)
    assert decode_image is image_codec.decode_image and decode_image_bytes is image_codec.decode_image_bytes
    assert decode_image(_EXAMPLE_PNG, "x").size == (1, 1)


def test_answers_and_output_tensors():
    answers = codec().answers(prediction())
    assert answers == [{"boxes": [CAT, {**DOG, "box": [5.0, 6.0, 7.0, 8.0]}], "count": 2},
                       {"boxes": [], "count": 0}]
    assert [output["name"] for output in codec().outputs()] == ["detections", "count"]
    assert {output["name"]: (output["datatype"], output["shape"]) for output in codec().outputs()} == \
        {"detections": ("BYTES", [-1]), "count": ("INT64", [-1])}
    tensors = codec().output_tensors(answers)
    assert tensors["count"] == ([2], [2, 0])
    shape, data = tensors["detections"]
    assert shape == [2] and all(isinstance(element, str) for element in data)
    assert [json.loads(element) for element in data] == [answer["boxes"] for answer in answers]
    with pytest.raises(ValueError, match="box"):
        codec().answers(Prediction(values=np.array([json.dumps([{**CAT, "box": [1, 2, 3]}])], dtype=object)))


def test_answer_schema_describes_the_answers():
    schema = codec().answer_schema()
    assert schema["required"] == ["boxes", "count"]
    item = schema["properties"]["boxes"]["items"]
    assert item["properties"]["class"]["enum"] == ["cat", "dog"]
    assert item["properties"]["box"]["minItems"] == item["properties"]["box"]["maxItems"] == 4
    assert item["properties"]["score"]["minimum"] == 0 and item["properties"]["score"]["maximum"] == 1
    unknown = DetectionCodec(Signature("boxes", "detection", "detection", None, ["image"])).answer_schema()
    assert "enum" not in unknown["properties"]["boxes"]["items"]["properties"]["class"]


def test_answers_validate_against_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = codec().answer_schema()
    for answer in codec().answers(prediction()):
        jsonschema.validate(answer, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"boxes": [{**CAT, "class": "bird"}], "count": 1}, schema)
